"""FFN sub-updates and neuron knockouts (Haviv et al. 2023, section 5; Geva et al. 2022).

Vocabulary (per layer ``l``, at one position):

* the **activation** ``m_i`` of neuron ``i`` is entry ``i`` of the input of the MLP's output
  projection (``lm.arch.mlp_out(l)``): GELU output for GPT-2, ``act(gate) * up`` for gated MLPs
  (Llama, Gemma), the intermediate output for BERT;
* its **value vector** ``v_i`` (``(d,)``) is what the output projection adds per unit of
  ``m_i``: column ``i`` of an ``nn.Linear`` weight, row ``i`` of a GPT-2 ``Conv1D`` weight;
* the MLP output is ``sum_i m_i v_i`` (+ bias): the **sub-updates** ``m_i v_i``, scored by
  ``|m_i| * ||v_i||`` at the prediction position.

A **knockout** zeroes chosen activations (so their sub-updates vanish) during a forward pass,
per probe and per layer, at every position (``scope="all"``, the authors' choice) or at the
prediction position only (``scope="prediction"``).

:func:`knockout_sweep` runs the paper's experiment, batched: one baseline forward per batch of
probes scores every neuron of every layer once; then each configuration (control, k, window of
layers) is one forward per batch with per-probe neuron sets. That forward resumes at the window's
first block from the recorded clean run (earlier blocks cannot change), about half the work of a
whole forward. Only the last block's output at the prediction positions is read through the head
(never the LM head over every position).

Random neurons may, by chance, include top ones (1000 of 3072 neurons is a third of a GPT-2
medium layer): they are drawn uniformly, not from the rest.

Controls:

* ``"top"``: the k highest-scoring neurons of each layer in the window (per probe);
* ``"all_but_top"``: every neuron *except* those k (the authors' control);
* ``"random"``: k uniformly random neurons per probe and layer (ours: same number of zeroed
  neurons as ``"top"``, so a fair control). Draws come from a ``torch.Generator`` seeded from
  ``(seed, layer)``: the same neurons of a layer are used in every window containing it, and the
  k-sets are nested across k, like the top-k sets.

Groups (memorized / non-memorized idioms, Wikipedia sentences): put them in one probe frame with a
``group`` column; the sweep runs them together (mixed batches) and summarises per group.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from .hooks import (
    Call,
    capture_at_positions,
    capture_inputs_at_positions,
    forward_hooks,
    record_calls,
)
from .lens import (
    ACTIVATION_BYTES,
    LOGIT_CHUNK_BYTES,
    _final_prediction,
    _is_out_of_memory,
    _logits,
    _rank_and_prob,
    activation_token_budget,
    model_inputs,
    plan_batches,
)
from .models import LM
from .progress import progress_bar

__all__ = [
    "CONTROLS",
    "DEFAULT_KS",
    "TopNeurons",
    "cached_knockout_sweep",
    "control_contrast",
    "early_late_table",
    "knockout",
    "knockout_configs",
    "knockout_probe_groups",
    "knockout_sweep",
    "knockout_verdicts",
    "layer_profile",
    "mlp_width",
    "neuron_scores",
    "prediction_rank_in_value_vectors",
    "sub_update_examples",
    "summarize_sweep",
    "top_neurons",
    "value_vector_logits",
    "value_vector_tokens",
    "value_vectors",
    "window_matrix",
    "window_panels",
]

Scope = Literal["all", "prediction"]
Control = Literal["top", "all_but_top", "random"]
CONTROLS: tuple[str, ...] = ("top", "all_but_top", "random")
DEFAULT_KS: tuple[int, ...] = (1, 10, 100, 1000)
SWEEP_KEYS = ["control", "k_requested", "k", "start_layer", "end_layer", "window"]
# Resume each knockout forward at the window's first block from a recorded clean run (blocks
# before it are unaffected), instead of running every block: about half the work on average.
RESUME = True


# --- value vectors ----------------------------------------------------------------------------

def value_vectors(lm: LM, layer: int) -> torch.Tensor:
    """Return the value vectors of one layer's MLP neurons: ``(d_ff, d)``, a view of the weight.

    ``nn.Linear`` stores ``(d, d_ff)`` (the vectors are its columns); GPT-2's ``Conv1D`` stores
    ``(d_ff, d)`` (its rows).
    """
    module = lm.arch.mlp_out(layer)
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear):
        return weight.T
    if weight is not None and weight.ndim == 2 and hasattr(module, "nf"):  # transformers Conv1D
        return weight
    raise TypeError(
        f"{lm.arch.model_type} layer {layer}: MLP output projection {type(module).__name__} is "
        "neither nn.Linear nor Conv1D; memrecall.interventions cannot find its value vectors"
    )


def mlp_width(lm: LM, layer: int | None = None) -> int:
    """Count the MLP neurons (``d_ff``) of ``layer``, or of every layer (must be equal)."""
    if layer is not None:
        return value_vectors(lm, layer).shape[0]
    widths = {value_vectors(lm, i).shape[0] for i in range(lm.n_layers)}
    if len(widths) != 1:
        raise NotImplementedError(f"{lm.name}: MLP widths differ across layers ({widths})")
    return widths.pop()


def _value_norms(lm: LM) -> torch.Tensor:
    """``(n_layers, d_ff)`` float32 norms of every value vector."""
    return torch.stack([value_vectors(lm, layer).float().norm(dim=1)
                        for layer in range(lm.n_layers)])


def value_vector_logits(lm: LM, layer: int, neurons: torch.Tensor | Sequence[int],
                        signs: torch.Tensor | Sequence[float] | None = None, *,
                        through_norm: bool = False) -> torch.Tensor:
    """Project value vectors onto the vocabulary: ``(n,) -> (n, vocab)`` float32.

    Args:
        lm: the model.
        layer: the layer.
        neurons: ``(n,)`` neuron indices.
        signs: ``(n,)`` optional factors (e.g. the sign of the activation: a negative ``m_i``
            promotes the *bottom* tokens of ``v_i``).
        through_norm: False (default, Geva et al. 2022): ``E v``, the bare unembedding, no bias.
            True: read ``v`` as if it were the residual stream, through ``lm.arch.pre_unembed``
            (final norm; BERT: the MLM transform) and the full head (bias, soft-capping). With
            a norm that has a bias (GPT-2, BERT) this adds the same offset to every vector.
    """
    index = torch.as_tensor(neurons, dtype=torch.long, device=lm.device)
    vectors = value_vectors(lm, layer)[index]
    if signs is not None:
        vectors = vectors * torch.as_tensor(signs, device=lm.device, dtype=vectors.dtype)[:, None]
    if through_norm:
        hidden = lm.arch.pre_unembed(vectors.to(lm.dtype)).float()
        return _logits(lm, hidden, 0, lm.vocab_size)
    return vectors.float() @ lm.arch.unembed_weight.float().T


def value_vector_tokens(lm: LM, layer: int, neuron: int, k: int = 10, *, sign: float = 1.0,
                        through_norm: bool = False) -> list[str]:
    """Decode the ``k`` tokens a value vector promotes most (Geva et al. 2022).

    Args:
        lm: the model.
        layer: the layer.
        neuron: the neuron index.
        k: how many tokens.
        sign: ``-1`` for the tokens promoted when the activation is negative (the bottom ones).
        through_norm: see :func:`value_vector_logits` (default: bare unembedding ``E v``).
    """
    logits = value_vector_logits(lm, layer, [neuron], [sign], through_norm=through_norm)[0]
    ids = logits.topk(min(k, lm.vocab_size)).indices.tolist()
    return [lm.tokenizer.decode([i]) for i in ids]


# --- batches ----------------------------------------------------------------------------------

@dataclass
class _Batch:
    """One right-padded batch: ``rows`` index the probe frame."""

    rows: torch.Tensor  # (batch,) probe indices, on the device
    input_ids: torch.Tensor  # (batch, seq)
    attention_mask: torch.Tensor  # (batch, seq)
    positions: torch.Tensor  # (batch,) prediction positions

    def halves(self) -> list[_Batch]:
        half = len(self.rows) // 2
        return [_Batch(*(t[part] for t in (self.rows, self.input_ids, self.attention_mask,
                                             self.positions)))
                for part in (slice(None, half), slice(half, None))]


def _batches(lm: LM, prompts: Sequence[str], batch_size: int | None,
             trace: bool = False) -> list[_Batch]:
    """Padded batches under the activation budget (``trace``: room for every block's input)."""
    ids, positions = model_inputs(lm, prompts)
    pad = lm.tokenizer.pad_token_id or 0
    max_tokens = activation_token_budget(lm)
    if trace:
        budget = ACTIVATION_BYTES.get(lm.device.type, ACTIVATION_BYTES["cpu"])
        per_token = 4 * (lm.n_layers + 1) * lm.arch.unembed_weight.shape[1]
        max_tokens = max(64, min(max_tokens, budget // per_token))
    out = []
    for rows in plan_batches([len(r) for r in ids], max_tokens, batch_size):
        longest = max(len(ids[i]) for i in rows)
        out.append(_Batch(
            rows=torch.as_tensor(rows, dtype=torch.long, device=lm.device),
            input_ids=torch.tensor([ids[i] + [pad] * (longest - len(ids[i])) for i in rows],
                                   device=lm.device),
            attention_mask=torch.tensor([[1] * len(ids[i]) + [0] * (longest - len(ids[i]))
                                         for i in rows], device=lm.device),
            positions=torch.tensor([positions[i] for i in rows], device=lm.device),
        ))
    return out


def _map_batches(lm: LM, batches: list[_Batch],
                 fn: Callable[[_Batch], Any]) -> list[tuple[_Batch, Any]]:
    """Apply ``fn`` to every batch; on out-of-memory split that batch in two, for good."""
    out, i = [], 0
    while i < len(batches):
        try:
            out.append((batches[i], fn(batches[i])))
            i += 1
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error) or len(batches[i].rows) == 1:
                raise
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
            batches[i:i + 1] = batches[i].halves()
    return out


def _forward(lm: LM, batch: _Batch,
             activations: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the backbone on a batch (under whatever hooks are active).

    Returns:
        ``(batch, d)`` float32 last-block output at the prediction positions, through
        ``pre_unembed``; and, with ``activations``, the ``(n_layers, batch, d_ff)`` neuron
        activations at the prediction positions.
    """
    kwargs = {} if lm.is_masked else {"use_cache": False}
    modules = [lm.arch.mlp_out(layer) for layer in range(lm.n_layers)] if activations else []
    with capture_at_positions([lm.arch.blocks[-1]], batch.positions) as last, \
            capture_inputs_at_positions(modules, batch.positions) as acts:
        lm.arch.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         **kwargs)
    normed = lm.arch.pre_unembed(last[0].to(lm.dtype)).float()
    return normed, (torch.stack(acts) if activations else None)


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple | list) else output


def _block_input(call: Call) -> torch.Tensor:
    return call.args[0] if call.args else call.kwargs["hidden_states"]


def _trace(lm: LM, batch: _Batch) -> list[Call] | None:
    """A clean forward recording every block's inputs, so a forward can resume at any block.

    Returns None when the blocks do not form a simple chain (a block's hidden-state input is not
    the previous block's output); the caller then runs whole forwards.
    """
    kwargs = {} if lm.is_masked else {"use_cache": False}
    with record_calls(lm.arch.blocks) as calls:
        lm.arch.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         **kwargs)
    if any(call is None for call in calls):
        return None
    for before, after in zip(calls, calls[1:]):
        previous, given = _hidden(before.output), _block_input(after)
        if previous is not given and not torch.equal(previous, given):
            return None
    for call in calls:
        call.output = None  # only the inputs are needed: free the rest
    return calls


def _resume(lm: LM, batch: _Batch, trace: list[Call], start: int) -> torch.Tensor:
    """Run blocks ``start..`` on the traced input of block ``start`` (under active hooks).

    Blocks before ``start`` are not affected by knockouts at ``start`` or later, so this equals
    a whole forward. Returns what :func:`_forward` returns first: ``(batch, d)`` float32.
    """
    hidden = _block_input(trace[start])
    for layer in range(start, lm.n_layers):
        call = trace[layer]
        if call.args:
            output = lm.arch.blocks[layer](hidden, *call.args[1:], **call.kwargs)
        else:
            output = lm.arch.blocks[layer](*call.args, **{**call.kwargs, "hidden_states": hidden})
        hidden = _hidden(output)
    rows = torch.arange(len(batch.positions), device=hidden.device)
    return lm.arch.pre_unembed(hidden[rows, batch.positions].to(lm.dtype)).float()


def _probe_frame(probes: pd.DataFrame | Sequence[str]) -> pd.DataFrame:
    frame = (probes.reset_index(drop=True) if isinstance(probes, pd.DataFrame)
             else pd.DataFrame({"prompt": list(probes)}))
    if "prompt" not in frame.columns:
        raise ValueError("needs a `prompt` column (use memrecall.make_probes)")
    if len(frame) == 0:
        raise ValueError("no probes")
    return frame


def _targets(lm: LM, frame: pd.DataFrame) -> torch.Tensor | None:
    if "target_token" not in frame.columns:
        return None
    return torch.tensor(np.array(frame["target_token"], dtype=np.int64), device=lm.device)


# --- scores -----------------------------------------------------------------------------------

@dataclass
class TopNeurons:
    """The top sub-updates of every layer at each probe's prediction position (clean run).

    Attributes:
        indices: ``(n_probes, n_layers, k)`` int64 neuron indices, highest score first.
        scores: ``(n_probes, n_layers, k)`` float32 ``|m_i| * ||v_i||``.
        activations: ``(n_probes, n_layers, k)`` float32 signed activations ``m_i``.
        pred_token: ``(n_probes,)`` the model's greedy prediction.
        pred_prob: ``(n_probes,)`` its probability.
        target_prob: ``(n_probes,)`` probability of ``target_token``; None without targets.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    activations: torch.Tensor
    pred_token: torch.Tensor
    pred_prob: torch.Tensor
    target_prob: torch.Tensor | None

    def to(self, device: torch.device | str) -> TopNeurons:
        """Move every tensor to ``device``."""
        return TopNeurons(*(None if t is None else t.to(device) for t in (
            self.indices, self.scores, self.activations, self.pred_token, self.pred_prob,
            self.target_prob)))


def _final_probs(lm: LM, normed: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Probabilities ``(batch, m)`` of ``tokens`` ``(batch, m)`` under the final distribution."""
    return _rank_and_prob(lm, normed, tokens)[1]


def _score_tokens(pred: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    return pred[:, None] if targets is None else torch.stack([pred, targets], 1)


@torch.no_grad()
def _top(lm: LM, batches: list[_Batch], n: int, targets: torch.Tensor | None, k: int | None,
         progress: bool = False) -> TopNeurons | torch.Tensor:
    """Clean forward per batch: top-``k`` neurons per layer (``k=None``: all scores)."""
    norms = _value_norms(lm)  # (n_layers, d_ff)
    d_ff = norms.shape[1]
    keep = d_ff if k is None else min(k, d_ff)
    shape = (n, lm.n_layers, keep)
    indices = torch.zeros(shape, dtype=torch.long, device=lm.device)
    scores = torch.zeros(shape, device=lm.device)
    activations = torch.zeros(shape, device=lm.device)
    pred_token = torch.zeros(n, dtype=torch.long, device=lm.device)
    probs = torch.zeros(n, 1 if targets is None else 2, device=lm.device)

    def run(batch: _Batch):
        normed, acts = _forward(lm, batch, activations=True)
        acts = acts.float().transpose(0, 1)  # (batch, n_layers, d_ff)
        score = acts.abs() * norms
        pred, _ = _final_prediction(lm, normed)
        tokens = _score_tokens(pred, None if targets is None else targets[batch.rows])
        if k is None:
            return score, None, None, pred, _final_probs(lm, normed, tokens)
        top = score.topk(keep, dim=-1)
        return (top.values, top.indices, acts.gather(-1, top.indices), pred,
                _final_probs(lm, normed, tokens))

    bar = progress_bar(total=n, desc=f"score neurons {lm.name}", unit="probe",
                       disable=not progress)
    with bar:
        for batch, (score, index, act, pred, prob) in _map_batches(lm, batches, run):
            scores[batch.rows] = score
            if index is not None:
                indices[batch.rows], activations[batch.rows] = index, act
            pred_token[batch.rows], probs[batch.rows] = pred, prob
            bar.update(len(batch.rows))
    if k is None:
        return scores
    return TopNeurons(indices=indices, scores=scores, activations=activations,
                      pred_token=pred_token, pred_prob=probs[:, 0],
                      target_prob=None if targets is None else probs[:, 1])


def neuron_scores(lm: LM, probes: pd.DataFrame | Sequence[str], *,
                  batch_size: int | None = None) -> torch.Tensor:
    """Every neuron's score ``|m_i| * ||v_i||`` at each probe's prediction position.

    Returns:
        ``(n_probes, n_layers, d_ff)`` float32 on CPU (mind the memory for many probes; use
        :func:`top_neurons` for the top ones only).
    """
    frame = _probe_frame(probes)
    batches = _batches(lm, frame["prompt"].astype(str).tolist(), batch_size)
    return _top(lm, batches, len(frame), None, None).cpu()


def top_neurons(lm: LM, probes: pd.DataFrame | Sequence[str], k: int = 10, *,
                batch_size: int | None = None, progress: bool | None = None) -> TopNeurons:
    """Find the ``k`` highest-scoring MLP neurons of every layer for each probe (on CPU).

    Args:
        lm: the model.
        probes: probe frame (``prompt``, optional ``target_token``) or plain prompts.
        k: neurons per layer, capped at the MLP width.
        batch_size: at most this many prompts per forward (default: the activation budget).
        progress: show a progress bar (default: more than 64 probes).
    """
    frame = _probe_frame(probes)
    batches = _batches(lm, frame["prompt"].astype(str).tolist(), batch_size)
    show = progress if progress is not None else len(frame) > 64
    return _top(lm, batches, len(frame), _targets(lm, frame), k, show).to("cpu")


# --- knockout ---------------------------------------------------------------------------------

def _neuron_mask(chosen: torch.Tensor | Sequence[int], width: int,
                 device: torch.device) -> torch.Tensor:
    """``(rows, k)`` or ``(k,)`` indices (negative = padding) -> ``(rows or 1, width)`` bool."""
    index = torch.as_tensor(chosen, dtype=torch.long, device=device)
    if index.ndim == 1:
        index = index.unsqueeze(0)
    if index.ndim != 2:
        raise ValueError(f"neuron indices must be (k,) or (batch, k); got {tuple(index.shape)}")
    if index.numel() and int(index.max()) >= width:
        raise IndexError(f"neuron index {int(index.max())} out of range for MLP width {width}")
    index = torch.where(index < 0, width, index)  # padding goes to a spare column, dropped below
    mask = torch.zeros(index.shape[0], width + 1, dtype=torch.bool, device=device)
    mask.scatter_(1, index, True)
    return mask[:, :width]


def _zeroing_hook(mask: torch.Tensor, positions: torch.Tensor | None, scope: Scope,
                  layer: int) -> Callable:
    def hook(module, args):
        x = args[0]  # (batch, seq, d_ff)
        if mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"knockout of layer {layer}: neuron sets for {mask.shape[0]} rows, "
                             f"but the forward pass has {x.shape[0]}")
        if scope == "all":
            x = x.masked_fill(mask.unsqueeze(1), 0)
        else:
            if len(positions) != x.shape[0]:
                raise ValueError(f"knockout: {len(positions)} positions for a batch of "
                                 f"{x.shape[0]}")
            rows = torch.arange(x.shape[0], device=x.device)
            x = x.clone()
            x[rows, positions] = x[rows, positions].masked_fill(mask, 0)
        return (x, *args[1:])

    return hook


@contextmanager
def knockout(lm: LM, neurons: Mapping[int, torch.Tensor | Sequence[int]], *,
             positions: torch.Tensor | Sequence[int] | None = None, scope: Scope = "all",
             complement: bool = False) -> Iterator[None]:
    """Zero chosen MLP neuron activations in every forward pass inside the ``with`` block.

    Args:
        lm: the model.
        neurons: ``{layer: indices}`` with indices ``(batch, k)`` (one set per row of the batch
            that will run; negative entries are padding, ignored) or ``(k,)`` (the same set for
            every row). Layers are 0-based, not negative.
        positions: ``(batch,)`` prediction positions; needed for ``scope="prediction"``.
        scope: ``"all"`` zeroes at every position (the authors' choice); ``"prediction"`` only at
            ``positions``.
        complement: zero every neuron *except* the given ones (the all-but-top-k control).

    The hooks (forward-pre hooks on ``lm.arch.mlp_out(layer)``) are removed on exit, also after
    an exception.
    """
    if scope not in ("all", "prediction"):
        raise ValueError(f"scope must be 'all' or 'prediction', not {scope!r}")
    if scope == "prediction":
        if positions is None:
            raise ValueError("scope='prediction' needs the prediction positions")
        positions = torch.as_tensor(positions, dtype=torch.long, device=lm.device)
    hooks = []
    for layer, chosen in neurons.items():
        if not 0 <= layer < lm.n_layers:
            raise IndexError(f"layer {layer} out of range for {lm.n_layers} layers")
        module = lm.arch.mlp_out(layer)
        mask = _neuron_mask(chosen, mlp_width(lm, layer), lm.device)
        if complement:
            mask = ~mask
        hooks.append((module, _zeroing_hook(mask, positions, scope, layer)))
    with forward_hooks(hooks, pre=True):
        yield


# --- the sweep --------------------------------------------------------------------------------

def _windows(n_layers: int, max_window: int) -> list[tuple[int, int]]:
    return [(start, start + size - 1) for start in range(n_layers)
            for size in range(1, max_window + 1) if start + size - 1 < n_layers]


def knockout_configs(n_layers: int, d_ff: int, ks: Sequence[int] = DEFAULT_KS,
                     max_window: int | Mapping[str, int] = 5,
                     controls: Sequence[str] = CONTROLS) -> pd.DataFrame:
    """Every (control, k, window) of a sweep, in the order it runs.

    ``k`` is ``k_requested`` capped at ``d_ff``; requests that cap to the same ``k`` run once.
    ``max_window`` may differ per control (e.g. ``{"all_but_top": 3}``; missing ones: 5).
    Windows are ``[start_layer, end_layer]``, 0-based and inclusive.
    """
    for control in controls:
        if control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")
    capped: dict[int, int] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        capped.setdefault(min(k, d_ff), k)
    rows = []
    for control in controls:
        widest = max_window.get(control, 5) if isinstance(max_window, Mapping) else max_window
        for k, requested in capped.items():
            for start, end in _windows(n_layers, widest):
                rows.append((control, requested, k, start, end, end - start + 1))
    return pd.DataFrame(rows, columns=SWEEP_KEYS)


def _seed_for(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def _random_neurons(n: int, n_layers: int, d_ff: int, k: int, seed: int) -> torch.Tensor:
    """``(n, n_layers, k)``: per probe and layer a uniformly random k-subset, nested in k."""
    out = torch.empty(n, n_layers, k, dtype=torch.long)
    for layer in range(n_layers):
        generator = torch.Generator().manual_seed(_seed_for(seed, layer))
        out[:, layer] = torch.rand(n, d_ff, generator=generator).topk(k, dim=-1).indices
    return out


def knockout_sweep(lm: LM, probes: pd.DataFrame | Sequence[str], *,
                   ks: Sequence[int] = DEFAULT_KS, max_window: int | Mapping[str, int] = 5,
                   controls: Sequence[str] = CONTROLS, scope: Scope = "all",
                   batch_size: int | None = None, seed: int = 0, per_probe: bool = False,
                   group_column: str = "group", progress: bool | None = None) -> pd.DataFrame:
    """Knock out top-k / all-but-top-k / random-k neurons in windows of layers; measure changes.

    Neurons are ranked once per probe on the clean run (:func:`top_neurons`); each
    configuration is then one forward per batch, each probe with its own neuron sets.

    Args:
        lm: the model.
        probes: probe frame (``prompt``, ``target_token``; optional ``group_column``) or plain
            prompts (no target columns then).
        ks: neurons per layer; capped at the MLP width (duplicates after capping run once).
        max_window: windows of 1..``max_window`` consecutive layers from every start layer; an
            int or ``{control: int}``.
        controls: any of ``"top"``, ``"all_but_top"``, ``"random"``.
        scope: ``"all"`` positions (the authors') or ``"prediction"`` position only.
        batch_size: at most this many probes per forward (default: the activation budget).
        seed: seeds the random control (see the module docstring).
        per_probe: return one row per (probe, configuration) instead of the summary.
        group_column: if ``probes`` has this column, it is carried along and summaries are
            per group.
        progress: a progress bar over configurations (default: more than 50 of them).

    Returns:
        The summary (see :func:`summarize_sweep`): one row per ([group,] configuration) with
        ``control, k_requested, k, start_layer, end_layer`` (0-based, inclusive), ``window,
        n_probes, changed_fraction, mean_pred_prob_drop`` and, with targets,
        ``mean_target_prob_drop, mean_base_target_prob``. With ``per_probe``: ``probe`` (row of
        ``probes``), [group,] the configuration, ``base_pred_token, pred_token, changed,
        base_pred_prob, pred_prob`` (of the *base* prediction after the knockout),
        ``pred_prob_drop`` and, with targets, ``target_token, is_memorized, base_target_prob,
        target_prob, target_prob_drop``.
    """
    frame = _probe_frame(probes)
    n = len(frame)
    d_ff = mlp_width(lm)
    configs = knockout_configs(lm.n_layers, d_ff, ks, max_window, controls)
    targets = _targets(lm, frame)
    batches = _batches(lm, frame["prompt"].astype(str).tolist(), batch_size, trace=RESUME)
    kmax = int(configs["k"].max()) if len(configs) else 1
    base = _top(lm, batches, n, targets, kmax)
    random = (_random_neurons(n, lm.n_layers, d_ff, kmax, seed).to(lm.device)
              if "random" in set(configs["control"]) else None)
    tokens = _score_tokens(base.pred_token, targets)
    base_probs = torch.stack([base.pred_prob] + ([] if targets is None else [base.target_prob]),
                             1)

    n_configs = len(configs)
    plan = list(configs.itertuples(index=False))
    pred_after = torch.zeros(n_configs, n, dtype=torch.long, device=lm.device)
    probs_after = torch.zeros(n_configs, n, tokens.shape[1], device=lm.device)
    show = progress if progress is not None else n_configs > 50
    bar = progress_bar(total=n_configs * n, desc=f"knockouts {lm.name} ({n_configs} configs)",
               unit="probe", unit_scale=True, disable=not show)

    def run(batch: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
        trace = _trace(lm, batch) if RESUME else None
        preds = torch.zeros(n_configs, len(batch.rows), dtype=torch.long, device=lm.device)
        probs = torch.zeros(n_configs, len(batch.rows), tokens.shape[1], device=lm.device)
        done = 0
        try:
            for c, config in enumerate(plan):
                chosen = random if config.control == "random" else base.indices
                neurons = {layer: chosen[batch.rows, layer, :config.k]
                           for layer in range(config.start_layer, config.end_layer + 1)}
                with knockout(lm, neurons, positions=batch.positions, scope=scope,
                              complement=config.control == "all_but_top"):
                    normed = (_forward(lm, batch)[0] if trace is None
                              else _resume(lm, batch, trace, config.start_layer))
                preds[c], _ = _final_prediction(lm, normed)
                probs[c] = _final_probs(lm, normed, tokens[batch.rows])
                bar.update(len(batch.rows))
                done += len(batch.rows)
        except BaseException:
            bar.update(-done)  # an out-of-memory retry redoes this batch in halves
            raise
        return preds, probs

    with torch.no_grad(), bar:
        for batch, (preds, probs) in _map_batches(lm, batches, run):
            pred_after[:, batch.rows], probs_after[:, batch.rows] = preds, probs

    detail = configs.loc[configs.index.repeat(n)].reset_index(drop=True)
    detail.insert(0, "probe", np.tile(np.arange(n), n_configs))
    if group_column in frame.columns:
        detail.insert(1, group_column, np.tile(frame[group_column].to_numpy(), n_configs))
    base_pred = np.tile(base.pred_token.cpu().numpy(), n_configs)
    base_probs = np.tile(base_probs.cpu().numpy(), (n_configs, 1))
    probs_after = probs_after.reshape(n_configs * n, -1).cpu().numpy()
    detail["base_pred_token"] = base_pred
    detail["pred_token"] = pred_after.reshape(-1).cpu().numpy()
    detail["changed"] = detail["pred_token"].to_numpy() != base_pred
    detail["base_pred_prob"] = base_probs[:, 0]
    detail["pred_prob"] = probs_after[:, 0]
    detail["pred_prob_drop"] = base_probs[:, 0] - probs_after[:, 0]
    if targets is not None:
        target = np.tile(targets.cpu().numpy(), n_configs)
        detail["target_token"] = target
        detail["is_memorized"] = base_pred == target
        detail["base_target_prob"] = base_probs[:, 1]
        detail["target_prob"] = probs_after[:, 1]
        detail["target_prob_drop"] = base_probs[:, 1] - probs_after[:, 1]
    return detail if per_probe else summarize_sweep(detail, group_column)


def summarize_sweep(detail: pd.DataFrame, group_column: str | None = "group") -> pd.DataFrame:
    """Aggregate a per-probe sweep over probes, per ([group,] configuration).

    Regroup differently by adding columns to ``detail`` first (e.g. group by ``is_memorized``
    with ``group_column="is_memorized"``).
    """
    keys = ([group_column] if group_column and group_column in detail.columns else []) \
        + SWEEP_KEYS
    aggregations = {"n_probes": ("probe", "size"), "changed_fraction": ("changed", "mean"),
                    "mean_pred_prob_drop": ("pred_prob_drop", "mean")}
    if "target_prob_drop" in detail.columns:
        aggregations["mean_target_prob_drop"] = ("target_prob_drop", "mean")
        aggregations["mean_base_target_prob"] = ("base_target_prob", "mean")
    return detail.groupby(keys, sort=False).agg(**aggregations).reset_index()


_SWEEP_DEFAULTS = {name: parameter.default for name, parameter
                   in inspect.signature(knockout_sweep).parameters.items()
                   if parameter.kind is inspect.Parameter.KEYWORD_ONLY}


def cached_knockout_sweep(lm: LM, probes: pd.DataFrame, cache_dir: str | Path | None,
                          **sweep_kwargs) -> pd.DataFrame:
    """:func:`knockout_sweep` through the results cache (model, probes, parameters).

    ``batch_size`` and ``progress`` do not enter the key; everything else does.
    """
    from .results import cached, frame_sha256, result_key

    defaults = _SWEEP_DEFAULTS
    unknown = set(sweep_kwargs) - set(defaults)
    if unknown:
        raise TypeError(f"knockout_sweep has no parameter(s) {sorted(unknown)}")
    params = {}
    for name, default in defaults.items():
        if name in ("batch_size", "progress"):
            continue
        value = sweep_kwargs.get(name, default)
        params[name] = (list(value) if isinstance(value, tuple | list)
                        else dict(value) if isinstance(value, Mapping) else value)
    group = params["group_column"]
    columns = [c for c in ("prompt", "target_token", group) if c in probes.columns]
    key = result_key(lm, frame_sha256(probes, columns), "knockout_sweep", **params)
    return cached(cache_dir, key, lambda: knockout_sweep(lm, probes, **sweep_kwargs))


# --- where the prediction sits in the top sub-updates -----------------------------------------

@torch.no_grad()
def prediction_rank_in_value_vectors(lm: LM, probes: pd.DataFrame | Sequence[str], k: int = 10,
                                     *, through_norm: bool = False,
                                     batch_size: int | None = None) -> pd.DataFrame:
    """Rank of the model's final prediction in the projections of each layer's top sub-updates.

    For each probe and layer, the ``k`` highest-scoring sub-updates ``m_i v_i`` at the
    prediction position are projected onto the vocabulary (:func:`value_vector_logits`, with the
    sign of ``m_i``: a negative activation promotes the bottom tokens of ``v_i``), and the rank
    of the final prediction is counted (0 = top; ties in its favour).

    Returns:
        One row per probe, same order: the probe columns plus ``pred_token`` and numpy cells
        ``sub_update_neurons`` ``(n_layers, k)``, ``sub_update_pred_rank`` ``(n_layers, k)``
        (highest score first) and ``best_sub_update_pred_rank`` ``(n_layers,)`` (the best rank
        over the k sub-updates).
    """
    frame = _probe_frame(probes).copy()
    top = top_neurons(lm, frame, k, batch_size=batch_size, progress=False).to(lm.device)
    n, n_layers, keep = top.indices.shape
    ranks = torch.zeros(n, n_layers, keep, dtype=torch.long, device=lm.device)
    tokens = top.pred_token[:, None].expand(n, keep).reshape(-1)
    chunk = max(1, LOGIT_CHUNK_BYTES // (4 * lm.vocab_size))
    for layer in range(n_layers):
        negative = (top.activations[:, layer] < 0).long()
        keys, inverse = torch.unique(top.indices[:, layer] * 2 + negative, return_inverse=True)
        inverse = inverse.reshape(-1)
        layer_ranks = torch.zeros(n * keep, dtype=torch.long, device=lm.device)
        for start in range(0, len(keys), chunk):
            part = keys[start:start + chunk]
            logits = value_vector_logits(lm, layer, part // 2, 1.0 - 2.0 * (part % 2),
                                         through_norm=through_norm)  # (chunk, vocab)
            pairs = ((inverse >= start) & (inverse < start + len(part))).nonzero().squeeze(1)
            for sub in pairs.split(chunk):
                rows = logits[inverse[sub] - start]  # (pairs, vocab)
                own = rows.gather(1, tokens[sub, None])
                layer_ranks[sub] = (rows > own).sum(1)
        ranks[:, layer] = layer_ranks.view(n, keep)
    frame["pred_token"] = top.pred_token.cpu().numpy()
    frame["sub_update_neurons"] = list(top.indices.cpu().numpy())
    frame["sub_update_pred_rank"] = list(ranks.cpu().numpy())
    frame["best_sub_update_pred_rank"] = list(ranks.min(dim=-1).values.cpu().numpy())
    return frame


# --- notebook helpers: probe groups, window matrices, early vs late, example sub-updates -------

def knockout_probe_groups(idiom_res: pd.DataFrame, wiki_res: pd.DataFrame | None, n: int,
                          seed: int = 0) -> pd.DataFrame:
    """The probes of a knockout sweep: up to ``n`` memorized, non-memorized and Wikipedia probes.

    Args:
        idiom_res: lens results of the idioms (``prompt``, ``target``, ``target_token``,
            ``is_memorized``; e.g. :func:`memrecall.pipeline.idiom_results`).
        wiki_res: the same for Wikipedia sentences (None: no Wikipedia group).
        n: probes per group; a smaller group is taken whole (a missing one is absent).
        seed: seeds the sample of each group.

    Returns:
        One frame (fresh index; groups in :data:`~memrecall.analysis.GROUPS` order, each in its
        original order) with ``group``, ``source`` and the probe columns (``text``, ``prompt``,
        ``target``, ``target_token``, ``is_memorized``) present in the inputs.
    """
    from .analysis import group_order, label_groups

    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    labelled = label_groups(idiom_res, wiki_res)
    keep = [c for c in ("group", "source", "text", "prompt", "target", "target_token",
                        "is_memorized") if c in labelled.columns]
    parts = []
    for group in group_order(labelled["group"]):
        rows = labelled[labelled["group"] == group]
        if len(rows) > n:
            rows = rows.sample(n=n, random_state=seed).sort_index()
        parts.append(rows[keep])
    if not parts:
        return pd.DataFrame(columns=keep)
    return pd.concat(parts, ignore_index=True)


def window_matrix(summary: pd.DataFrame, *, control: str = "top", k: int | None = None,
                  group: str | None = None, value: str = "changed_fraction",
                  n_layers: int | None = None) -> pd.DataFrame:
    """One (control, k, group) of a sweep summary as a start-layer x end-layer matrix.

    Args:
        summary: :func:`knockout_sweep` summary.
        control: the control to keep.
        k: ``k_requested`` to keep (None: the summary must hold a single one).
        group: the group to keep (None: the summary has no ``group`` column or a single group).
        value: the summary column in the cells.
        n_layers: size of the square matrix (default: the last ``end_layer`` + 1).

    Returns:
        ``(n_layers, n_layers)`` frame, index = start layer, columns = end layer (0-based, as in
        the summary: use ``plot_heatmap(..., index_base=0)``); NaN where no window ran.
    """
    rows = summary[summary["control"] == control]
    if k is not None:
        rows = rows[rows["k_requested"] == k]
    if group is not None:
        rows = rows[rows["group"] == group]
    if rows.duplicated(["start_layer", "end_layer"]).any():
        raise ValueError("several k or groups left: pass k= and group=")
    size = int(n_layers if n_layers is not None else summary["end_layer"].max() + 1)
    matrix = rows.pivot(index="start_layer", columns="end_layer", values=value)
    matrix = matrix.reindex(index=range(size), columns=range(size)).astype(float)
    matrix.index.name, matrix.columns.name = "start_layer", "end_layer"
    return matrix


def window_panels(summary: pd.DataFrame, control: str = "top", value: str = "changed_fraction",
                  groups: Sequence[str] | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """Every (k, group) matrix of one control, labelled for :func:`memrecall.plots.plot_heatmaps`.

    Returns:
        ``{"top-10 neurons": {"memorized (n=30)": matrix, ...}, ...}``: rows of panels by k
        (ascending), columns by group (:data:`~memrecall.analysis.GROUPS` order, or ``groups``).
    """
    from .analysis import group_order

    rows = summary[summary["control"] == control]
    n_layers = int(summary["end_layer"].max() + 1)
    has_groups = "group" in rows.columns
    groups = list(groups) if groups is not None else (
        group_order(rows["group"]) if has_groups else [None])
    label = {"top": "top-{k}", "random": "random {k}", "all_but_top": "all but top-{k}"}[control]
    panels: dict[str, dict[str, pd.DataFrame]] = {}
    for k in sorted(rows["k_requested"].unique()):
        row = {}
        for group in groups:
            part = rows[(rows["k_requested"] == k)
                        & ((rows["group"] == group) if group is not None else True)]
            if len(part):
                name = "all probes" if group is None else group
                row[f"{name} (n={int(part['n_probes'].iloc[0])})"] = window_matrix(
                    part, control=control, value=value, n_layers=n_layers)
        if row:
            panels[f"{label.format(k=int(k))} neurons per layer"] = row
    return panels


def layer_profile(summary: pd.DataFrame, window: int = 1,
                  value: str = "changed_fraction") -> pd.DataFrame:
    """Windows of one size, by start layer: tidy rows for a line plot.

    Returns:
        Columns ``[group,] control, k (the requested k), layer`` (1-based start layer),
        ``n_probes`` and ``value``, sorted by layer.
    """
    rows = summary[summary["window"] == window]
    keys = (["group"] if "group" in rows.columns else []) + ["control"]
    out = rows[keys + ["k_requested", "start_layer", "n_probes", value]].rename(
        columns={"k_requested": "k"})
    out = out.assign(layer=out.pop("start_layer") + 1)
    return out[[*keys, "k", "layer", "n_probes", value]].sort_values(
        [*keys, "k", "layer"]).reset_index(drop=True)


def early_late_table(detail: pd.DataFrame, window: int = 1) -> pd.DataFrame:
    """Compare knockouts in early layers with late ones, per probe (which change more?).

    For each probe and (control, k), the fraction of its windows of size ``window`` whose
    knockout changed its prediction, over the first half of start layers (*early*) and over the
    second half (*late*; the middle layer of an odd count is in neither). The two are compared
    across probes with a two-sided Wilcoxon signed-rank test (paired; p = 1 when every
    difference is 0, NaN with fewer than 2 probes).

    Args:
        detail: :func:`knockout_sweep` output with ``per_probe=True``.
        window: the window size to compare (1 = single layers).

    Returns:
        One row per ([group,] control, k): ``n_probes, early, late, difference`` (early - late,
        mean over probes), ``p_value``.
    """
    from scipy import stats

    rows = detail[detail["window"] == window]
    starts = np.sort(rows["start_layer"].unique())
    half = len(starts) // 2
    early_layers, late_layers = set(starts[:half]), set(starts[len(starts) - half:])
    rows = rows.assign(part=np.where(rows["start_layer"].isin(early_layers), "early",
                                     np.where(rows["start_layer"].isin(late_layers), "late",
                                              "middle")))
    keys = (["group"] if "group" in rows.columns else []) + ["control", "k_requested"]
    per_probe = (rows[rows["part"] != "middle"]
                 .groupby([*keys, "probe", "part"], sort=False)["changed"].mean()
                 .unstack("part").reset_index())
    out = []
    for key, part in per_probe.groupby(keys, sort=False):
        early = part.get("early", pd.Series(np.nan, index=part.index)).to_numpy(float)
        late = part.get("late", pd.Series(np.nan, index=part.index)).to_numpy(float)
        diff = early - late
        if len(diff) < 2 or np.isnan(diff).any():
            p = np.nan
        elif not np.any(diff):
            p = 1.0
        else:
            p = float(stats.wilcoxon(early, late).pvalue)
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                    "n_probes": len(part), "early": float(np.mean(early)),
                    "late": float(np.mean(late)), "difference": float(np.mean(diff)),
                    "p_value": p})
    return pd.DataFrame(out).rename(columns={"k_requested": "k"})


def control_contrast(detail: pd.DataFrame, window: int = 1, control: str = "top",
                     baseline: str = "random") -> pd.DataFrame:
    """Compare two controls per probe (does ``control`` change more than ``baseline``?).

    Per probe, the fraction of windows of size ``window`` whose knockout changed the prediction,
    under ``control`` and under ``baseline``; compared across probes with a two-sided Wilcoxon
    signed-rank test (p = 1 when every difference is 0, NaN with fewer than 2 probes).

    Returns:
        One row per ([group,] k): ``n_probes``, ``control`` and ``baseline`` means,
        ``difference`` (control - baseline), ``p_value``.
    """
    from scipy import stats

    rows = detail[(detail["window"] == window) & detail["control"].isin([control, baseline])]
    keys = (["group"] if "group" in rows.columns else []) + ["k_requested"]
    per_probe = (rows.groupby([*keys, "probe", "control"], sort=False)["changed"].mean()
                 .unstack("control").reset_index())
    out = []
    for key, part in per_probe.groupby(keys, sort=False):
        if control not in part or baseline not in part:
            continue
        a, b = part[control].to_numpy(float), part[baseline].to_numpy(float)
        if len(a) < 2:
            p = np.nan
        elif not np.any(a - b):
            p = 1.0
        else:
            p = float(stats.wilcoxon(a, b).pvalue)
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                    "n_probes": len(part), control: float(a.mean()), baseline: float(b.mean()),
                    "difference": float((a - b).mean()), "p_value": p})
    return pd.DataFrame(out).rename(columns={"k_requested": "k"})


@torch.no_grad()
def sub_update_examples(lm: LM, probes: pd.DataFrame | Sequence[str], layers: Sequence[int],
                        n_neurons: int = 3, n_tokens: int = 5, *,
                        batch_size: int | None = None) -> pd.DataFrame:
    """The top sub-updates of chosen layers for a few probes: which tokens they promote.

    For each probe and layer, the ``n_neurons`` highest-scoring sub-updates ``m_i v_i`` at the
    prediction position (:func:`top_neurons`); for each, the ``n_tokens`` tokens it promotes
    most (:func:`value_vector_tokens` with the sign of ``m_i``) and the rank of the model's
    final prediction in its projection (0 = top; as :func:`prediction_rank_in_value_vectors`).

    Args:
        lm: the model.
        probes: probe frame (``prompt``, optional ``target``) or plain prompts.
        layers: 0-based layers.
        n_neurons: sub-updates per layer.
        n_tokens: promoted tokens shown per sub-update.
        batch_size: at most this many prompts per forward.

    Returns:
        One row per (probe, layer, sub-update): ``probe`` (row of ``probes``), ``prompt``,
        [``target``,] ``prediction`` (decoded), ``layer`` (**1-based**), ``sub_update`` (1 =
        highest score), ``neuron``, ``activation``, ``score``, ``promotes`` (the tokens, joined
        by " | "), ``pred_rank``.
    """
    frame = _probe_frame(probes)
    for layer in layers:
        if not 0 <= layer < lm.n_layers:
            raise IndexError(f"layer {layer} out of range for {lm.n_layers} layers")
    top = top_neurons(lm, frame, n_neurons, batch_size=batch_size, progress=False)
    rows = []
    for probe in range(len(frame)):
        pred = int(top.pred_token[probe])
        for layer in layers:
            for j in range(top.indices.shape[2]):
                neuron = int(top.indices[probe, layer, j])
                activation = float(top.activations[probe, layer, j])
                sign = -1.0 if activation < 0 else 1.0
                logits = value_vector_logits(lm, layer, [neuron], [sign])[0]
                rows.append({
                    "probe": probe, "prompt": frame["prompt"].iloc[probe],
                    **({"target": frame["target"].iloc[probe]} if "target" in frame else {}),
                    "prediction": lm.tokenizer.decode([pred]), "layer": layer + 1,
                    "sub_update": j + 1, "neuron": neuron, "activation": activation,
                    "score": float(top.scores[probe, layer, j]),
                    "promotes": " | ".join(value_vector_tokens(lm, layer, neuron, n_tokens,
                                                               sign=sign)),
                    "pred_rank": int((logits > logits[pred]).sum()),
                })
    return pd.DataFrame(rows)


def knockout_verdicts(detail: pd.DataFrame, window: int = 1, alpha: float = 0.05,
                      reference: str = "memorized") -> list[str]:
    """Plain-language readings of a per-probe sweep (windows of ``window`` layers, control top).

    Per k: does knocking out the top-k neurons change more ``reference`` predictions in early
    layers than in late ones (:func:`early_late_table`)? More than for the other groups
    (Mann–Whitney on each probe's mean over windows,
    :func:`memrecall.analysis.compare_groups`)? More than knocking out k random neurons
    (:func:`control_contrast`)? "yes" needs the direction and p < ``alpha``.

    Returns:
        One line per finding; a single line saying so when there are no ``reference`` probes.
    """
    from .analysis import compare_groups, group_order

    def verdict(difference: float, p: float) -> str:
        if not np.isfinite(p):
            return "untested (too few probes)"
        if difference > 0 and p < alpha:
            return "yes"
        return "no (the opposite)" if difference < 0 and p < alpha else "not significantly"

    if "group" not in detail.columns or not (detail["group"] == reference).any():
        return [f"no {reference} probes: nothing to read (only the comparison groups ran)"]
    rows = detail[detail["window"] == window]
    early_late = early_late_table(rows)
    contrast = control_contrast(rows) if {"top", "random"} <= set(rows["control"]) else None
    top = rows[rows["control"] == "top"]
    others = [g for g in group_order(rows["group"]) if g != reference]
    lines = []
    for k in sorted(top["k_requested"].unique()):
        el = early_late[(early_late["control"] == "top") & (early_late["k"] == k)
                        & (early_late["group"] == reference)].iloc[0]
        lines.append(f"top-{k}, {reference}: early layers {el.early:.0%} vs late {el.late:.0%} "
                     f"of predictions changed (Wilcoxon p={el.p_value:.2g}) -> early > late: "
                     f"{verdict(el.difference, el.p_value)}")
        means = (top[top["k_requested"] == k].groupby(["group", "probe"])["changed"].mean())
        for other in others:
            if other not in means.index.get_level_values(0):
                continue
            test = compare_groups(means[reference], means[other])
            lines.append(
                f"top-{k}, {reference} vs {other}: {means[reference].mean():.0%} vs "
                f"{means[other].mean():.0%} changed on average over windows (Mann-Whitney "
                f"p={test['p_value']:.2g}) -> {reference} more fragile: "
                f"{verdict(test['rank_biserial'], test['p_value'])}")
        if contrast is not None:
            c = contrast[(contrast["k"] == k) & (contrast["group"] == reference)].iloc[0]
            lines.append(f"top-{k} vs random {k}, {reference}: {c['top']:.0%} vs "
                         f"{c['random']:.0%} changed (Wilcoxon p={c.p_value:.2g}) -> top "
                         f"neurons matter more: {verdict(c.difference, c.p_value)}")
    return lines
