"""The knockout sweep of Haviv et al. (2023, §5.3, appendix C), batched across configurations.

One clean forward per batch of probes scores every neuron of every layer
(:func:`~memrecall.interventions.neurons.score_batches`) and another records every block's input
(:class:`~memrecall.interventions.resume.CleanRun`). Then every (configuration, probe) pair is a
*row*: rows of the same start layer run together, many per forward, each with its own 0/1 neuron
mask multiplied into the MLP activations of its window
(:func:`~memrecall.interventions.knockout.neuron_masks`), each resumed at its window's first
block from its probe's clean run. Only the prediction position goes through the head, in one
streaming pass (:meth:`memrecall.models.head.Head.scan`: the new prediction, and the rank and
probability of the clean prediction and of the target). Rows per forward follow the activation
budget (:func:`memrecall.forward.activation_token_budget`); a forward that runs out of memory is
redone in halves (:func:`memrecall.forward.halve_on_oom`).

Controls (the paper's names):

* ``"dominant"``: the k sub-updates with the largest ``|m_i| * ||v_i||`` of each layer in the
  window (per probe, at its prediction position);
* ``"non_dominant"``: every neuron *except* those k;
* ``"random"``: k uniformly random neurons per probe and layer (ours: as many zeroed neurons as
  ``"dominant"``, so a fair control; :func:`~memrecall.interventions.neurons.random_neurons`:
  the same neurons of a layer in every window containing it, nested across k). Random neurons
  may, by chance, include dominant ones.

The paper's design is the default (:data:`PAPER_KS`, :data:`PAPER_MAX_WINDOW`); the authors'
released code also ran :data:`RELEASED_KS` and windows up to :data:`RELEASED_MAX_WINDOW`, which
stay available as parameters.

Groups (memorized / non-memorized idioms, Wikipedia prompts): put them in one probe frame with a
``group`` column; the sweep runs them together and summarises per group.

Gemma 2/3 normalise the MLP output, scaling kept sub-updates back up: ``frozen_norm`` freezes
that norm's scale at the clean run's where a window knocks neurons out, so the residual stream
loses exactly the knocked-out sub-updates, as GPT-2's does (:mod:`.knockout`: where, and why).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..forward.batching import activation_token_budget, halve_on_oom
from ..models import LM
from ..runmode import progress_bar
from .controls import CONTROLS, control
from .knockout import Scope, neuron_mask, neuron_masks
from .neurons import mlp_width, prediction_and_target, random_neurons, score_batches
from .resume import (
    CleanRun,
    ProbeBatch,
    fit_copies,
    map_batches,
    naming_prompts,
    probe_batches,
    probe_frame,
    target_tokens,
)
from .rows import HEAD_ROWS, HeadQueue, halves, spans, staggered_rows
from .summary import SWEEP_KEYS, summarize_sweep

__all__ = ["PAPER_KS", "PAPER_MAX_WINDOW", "RELEASED_KS", "RELEASED_MAX_WINDOW",
           "SweepConfig", "knockout_configs", "knockout_sweep"]

PAPER_KS: tuple[int, ...] = (10,)
PAPER_MAX_WINDOW = 3
RELEASED_KS: tuple[int, ...] = (1, 10, 100, 1000)
RELEASED_MAX_WINDOW = 5


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep computes: every field changes the result (and is its cache key).

    How it runs (batch size, rows per forward, progress bar, resuming) is not part of it: those
    change speed and memory, never the numbers.

    Attributes:
        ks: neurons per layer; capped at the MLP width (duplicates after capping run once).
        max_window: windows of 1..``max_window`` consecutive layers from every start layer; an
            int, or ``{control: int}`` (missing controls: :data:`PAPER_MAX_WINDOW`).
        controls: any of :data:`CONTROLS`.
        scope: ``"all"`` positions (the authors') or ``"prediction"`` position only.
        frozen_norm: a norm after the MLP (Gemma 2/3) keeps the clean run's scale where
            neurons are knocked out (:mod:`.knockout`); False recomputes it. Other models: no
            effect, and not in their :meth:`key`.
        seed: seeds the random control.
        per_probe: one row per (probe, configuration) instead of the summary.
        group_column: if the probes have this column, it is carried along and summaries are
            per group.
    """

    ks: tuple[int, ...] = PAPER_KS
    max_window: int | Mapping[str, int] = PAPER_MAX_WINDOW
    controls: tuple[str, ...] = CONTROLS
    scope: Scope = "all"
    frozen_norm: bool = True
    seed: int = 0
    per_probe: bool = False
    group_column: str = "group"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        object.__setattr__(self, "controls", tuple(self.controls))
        if isinstance(self.max_window, Mapping):
            object.__setattr__(self, "max_window", dict(self.max_window))
        _check_controls(self.controls)
        if self.scope not in ("all", "prediction"):
            raise ValueError(f"scope must be 'all' or 'prediction', not {self.scope!r}")

    def __hash__(self) -> int:
        return hash(json.dumps(self.key(), sort_keys=True))

    def key(self, lm: LM | None = None) -> dict:
        """The fields as plain JSON values (lists and dicts), for a cache key.

        With ``lm``, those that change its result: no ``frozen_norm`` without a post-MLP norm.
        """
        fields = asdict(self)
        if lm is not None and not lm.arch.has_post_mlp_norm:
            del fields["frozen_norm"]
        return {name: (list(value) if isinstance(value, tuple)
                       else dict(value) if isinstance(value, Mapping) else value)
                for name, value in fields.items()}


def _check_controls(controls: Sequence[str]) -> None:
    for name in controls:
        control(name)


def _windows(n_layers: int, max_window: int) -> list[tuple[int, int]]:
    return [(start, start + size - 1) for start in range(n_layers)
            for size in range(1, max_window + 1) if start + size - 1 < n_layers]


def knockout_configs(n_layers: int, d_ff: int, ks: Sequence[int] = PAPER_KS,
                     max_window: int | Mapping[str, int] = PAPER_MAX_WINDOW,
                     controls: Sequence[str] = CONTROLS) -> pd.DataFrame:
    """Every (control, k, window) of a sweep.

    ``k`` is ``k_requested`` capped at ``d_ff``; requests that cap to the same ``k`` run once.
    ``max_window`` may differ per control (e.g. ``{"non_dominant": 1}``; missing ones:
    :data:`PAPER_MAX_WINDOW`). Windows are ``[start_layer, end_layer]``, 0-based and inclusive.
    """
    _check_controls(controls)
    capped: dict[int, int] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        capped.setdefault(min(k, d_ff), k)
    rows = []
    for name in controls:
        widest = (max_window.get(name, PAPER_MAX_WINDOW) if isinstance(max_window, Mapping)
                  else max_window)
        for k, requested in capped.items():
            for start, end in _windows(n_layers, widest):
                rows.append((name, requested, k, start, end, end - start + 1))
    return pd.DataFrame(rows, columns=SWEEP_KEYS)


# --- rows: (configuration, probe) pairs --------------------------------------------------------

@dataclass
class _Plan:
    """The configurations as tensors on the device, and the neuron sets they draw from."""

    start: torch.Tensor  # (n_configs,) first layer of the window
    end: torch.Tensor  # (n_configs,) last layer
    k: torch.Tensor  # (n_configs,) neurons per layer
    complement: torch.Tensor  # (n_configs,) bool: zero all but the chosen ones
    random: torch.Tensor  # (n_configs,) bool: the chosen ones are the random draw
    dominant: torch.Tensor  # (n_probes, n_layers, kmax) neuron indices
    drawn: torch.Tensor | None  # (n_probes, n_layers, kmax) random neurons

    def masks(self, layers: range, configs: torch.Tensor, probes: torch.Tensor,
              width: int) -> dict[int, torch.Tensor]:
        """``{layer: (rows, width)}`` float 0/1 masks (1 = keep) of each row in ``layers``."""
        k = self.k[configs]
        kmax = int(k.max())
        keep_column = torch.arange(kmax, device=k.device) < k[:, None]  # (rows, kmax)
        random = self.random[configs]
        out = {}
        for layer in layers:
            index = self.dominant[probes, layer, :kmax]
            if self.drawn is not None and bool(random.any()):
                index = torch.where(random[:, None], self.drawn[probes, layer, :kmax], index)
            zero = neuron_mask(torch.where(keep_column, index, -1), width, index.device)
            zero = zero ^ self.complement[configs, None]
            zero &= (self.end[configs] >= layer)[:, None]  # rows whose window ends earlier
            out[layer] = (~zero).float()
        return out


def _staggered(lm: LM, plan: _Plan, clean: CleanRun, max_rows: int, scope: Scope,
               head: HeadQueue) -> int:
    """Every (configuration, probe) row of one probe batch, in one pass over the blocks.

    :func:`~memrecall.interventions.rows.staggered_rows`, each row with its own neuron mask
    where its window covers the block. Returns the number of rows.
    """
    batch, width = clean.batch, mlp_width(lm)

    def run_block(layer: int, configs: torch.Tensor, probes: torch.Tensor,
                  hidden: torch.Tensor) -> torch.Tensor:
        masks = plan.masks(range(layer, layer + 1), configs, batch.rows[probes], width)
        with neuron_masks(lm, masks, positions=batch.positions[probes], scope=scope,
                          norm_scales=clean.scales_for(masks, probes)):
            return clean.run_block(layer, hidden, probes)

    return staggered_rows(lm, clean, plan.start, max_rows, head, run_block)


def _by_start(lm: LM, plan: _Plan, clean: CleanRun, max_rows: int, scope: Scope,
              head: HeadQueue) -> int:
    """The rows of :func:`_staggered` without a recording: whole forwards, by start layer."""
    batch, width = clean.batch, mlp_width(lm)
    size, device = len(batch.rows), batch.rows.device
    total = 0
    for start in torch.unique(plan.start).tolist():
        joining = torch.nonzero(plan.start == start).squeeze(1)
        configs = joining.repeat_interleave(size)
        probes = torch.arange(size, device=device).repeat(len(joining))

        def step(span: tuple[int, int], start: int = start, configs: torch.Tensor = configs,
                 probes: torch.Tensor = probes) -> None:
            part = slice(*span)
            rows_c, rows_p = configs[part], probes[part]
            layers = range(start, int(plan.end[rows_c].max()) + 1)
            masks = plan.masks(layers, rows_c, batch.rows[rows_p], width)
            with neuron_masks(lm, masks, positions=batch.positions[rows_p], scope=scope,
                              norm_scales=clean.scales_for(layers, rows_p)):
                normed = clean.forward_rows(start, rows_p)
            head.add(rows_c, batch.rows[rows_p], normed)

        halve_on_oom(spans(len(configs), max_rows), step, halves, lm.device)
        total += len(configs)
    return total


def knockout_sweep(lm: LM, probes: pd.DataFrame | Sequence[str],
                   config: SweepConfig | None = None, *, batch_size: int | None = None,
                   max_rows: int | None = None, progress: bool | None = None,
                   resume: bool = True, **fields) -> pd.DataFrame:
    """Knock out dominant / non-dominant / random neurons in windows of layers; measure changes.

    Neurons are ranked once per probe on the clean run; then every (configuration, probe) row
    runs with its own neuron masks, many rows per forward, each resumed at its window's first
    block.

    Args:
        lm: the model.
        probes: probe frame (``prompt``, ``target_token``; optional group column) or plain
            prompts (no target columns then).
        config: what to compute (default :class:`SweepConfig()`, the paper's design).
        batch_size: at most this many probes per clean forward (default: the activation
            budget; probes of one length share a batch).
        max_rows: at most this many (configuration, probe) rows per forward (default: as many
            as the activation budget allows).
        progress: a progress bar over rows (default: more than 5000 of them).
        resume: resume each row at its window's first block from the recorded clean run
            (default), or run whole forwards (same numbers).
        **fields: :class:`SweepConfig` fields replacing those of ``config``
            (``ks=(10,), max_window=2, ...``).

    Returns:
        The summary (see :func:`summarize_sweep`). With ``per_probe``: one row per
        (configuration, probe): ``probe`` (row of ``probes``), [group,] the configuration
        (:data:`SWEEP_KEYS`; layers 0-based), ``base_pred_token, pred_token, changed,
        base_pred_prob, pred_prob`` (of the *clean* prediction, after the knockout) and, with
        targets, ``target_token, is_memorized, base_target_rank, target_rank, base_target_prob,
        target_prob, target_rank_change`` (after - before) and ``target_prob_change`` (after -
        before, in **percentage points** of absolute probability).

    Raises:
        NonFiniteError: a NaN or inf normed state or logit, clean or after a knockout (names
            the model, its dtype, the 1-based layer and the first affected probe).
    """
    config = replace(config or SweepConfig(), **fields)
    frame = probe_frame(probes)
    with naming_prompts(frame["prompt"].astype(str).tolist()):
        return _sweep(lm, frame, config, batch_size, max_rows, progress, resume)


def _sweep(lm: LM, frame: pd.DataFrame, config: SweepConfig, batch_size: int | None,
           max_rows: int | None, progress: bool | None, resume: bool) -> pd.DataFrame:
    """:func:`knockout_sweep` on a checked probe frame."""
    n = len(frame)
    d_ff = mlp_width(lm)
    configs = knockout_configs(lm.n_layers, d_ff, config.ks, config.max_window, config.controls)
    targets = target_tokens(lm, frame)
    batches = probe_batches(lm, frame["prompt"].astype(str).tolist(), batch_size, trace=resume,
                            overhead_tokens=1)
    kmax = int(configs["k"].max()) if len(configs) else 1
    base = score_batches(lm, batches, n, targets, kmax)
    device = lm.device
    controls = [control(name) for name in configs["control"]]
    plan = _Plan(
        start=torch.tensor(configs["start_layer"].to_numpy(), device=device),
        end=torch.tensor(configs["end_layer"].to_numpy(), device=device),
        k=torch.tensor(configs["k"].to_numpy(), device=device),
        complement=torch.tensor([c.complement for c in controls], dtype=torch.bool,
                                device=device),
        random=torch.tensor([c.draw == "random" for c in controls], dtype=torch.bool,
                            device=device),
        dominant=base.indices,
        drawn=(random_neurons(n, lm.n_layers, d_ff, kmax, config.seed).to(device)
               if any(c.draw == "random" for c in controls) else None))
    tokens = prediction_and_target(base.pred_token, targets)  # (n, 1 or 2)

    n_configs = len(configs)
    out = (torch.zeros(n_configs, n, dtype=torch.long, device=device),
           torch.zeros(n_configs, n, tokens.shape[1], dtype=torch.long, device=device),
           torch.zeros(n_configs, n, tokens.shape[1], device=device))
    head = HeadQueue(lm, tokens, out, HEAD_ROWS if device.type == "cpu" else n_configs * n)
    show = progress if progress is not None else n_configs * n > 5000
    bar = progress_bar(total=n_configs * n, desc=f"knockouts {lm.name} ({n_configs} configs)",
                       unit="row", unit_scale=True, disable=not show)
    budget = activation_token_budget(lm)

    def run_batch(batch: ProbeBatch) -> None:
        clean = CleanRun(lm, batch, resume=resume, norm_scales=config.frozen_norm)
        cap = max_rows or max(1, budget // batch.input_ids.shape[1])
        run = _staggered if clean.resumes else _by_start
        bar.update(run(lm, plan, clean, cap, config.scope, head))

    with torch.no_grad(), bar:
        map_batches(lm, fit_copies(lm, batches, n_configs), run_batch)
        head.flush()
    pred_after, rank_after, prob_after = out
    return _detail(frame, configs, base, targets, pred_after, rank_after, prob_after, config)


def _detail(frame: pd.DataFrame, configs: pd.DataFrame, base, targets: torch.Tensor | None,
            pred_after: torch.Tensor, rank_after: torch.Tensor, prob_after: torch.Tensor,
            config: SweepConfig) -> pd.DataFrame:
    """The per-probe frame of :func:`knockout_sweep` (or its summary)."""
    n, n_configs = len(frame), len(configs)
    detail = configs.loc[configs.index.repeat(n)].reset_index(drop=True)
    detail.insert(0, "probe", np.tile(np.arange(n), n_configs))
    group_column = config.group_column
    if group_column in frame.columns:
        detail.insert(1, group_column, np.tile(frame[group_column].to_numpy(), n_configs))
    base_pred = np.tile(base.pred_token.cpu().numpy(), n_configs)
    ranks = rank_after.reshape(n_configs * n, -1).cpu().numpy()
    probs = prob_after.reshape(n_configs * n, -1).cpu().numpy()
    detail["base_pred_token"] = base_pred
    detail["pred_token"] = pred_after.reshape(-1).cpu().numpy()
    detail["changed"] = detail["pred_token"].to_numpy() != base_pred
    detail["base_pred_prob"] = np.tile(base.pred_prob.cpu().numpy(), n_configs)
    detail["pred_prob"] = probs[:, 0]
    if targets is not None:
        target = np.tile(targets.cpu().numpy(), n_configs)
        detail["target_token"] = target
        detail["is_memorized"] = base_pred == target
        detail["base_target_rank"] = np.tile(base.target_rank.cpu().numpy(), n_configs)
        detail["target_rank"] = ranks[:, 1]
        detail["base_target_prob"] = np.tile(base.target_prob.cpu().numpy(), n_configs)
        detail["target_prob"] = probs[:, 1]
        detail["target_rank_change"] = detail["target_rank"] - detail["base_target_rank"]
        detail["target_prob_change"] = 100 * (detail["target_prob"].astype(np.float64)
                                              - detail["base_target_prob"])
    return detail if config.per_probe else summarize_sweep(detail, group_column)
