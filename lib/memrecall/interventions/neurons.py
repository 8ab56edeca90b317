"""MLP neurons: value vectors, scores of the sub-updates, the top ones, and seeded random draws.

Vocabulary (per layer ``l``, at one position):

* the **activation** ``m_i`` of neuron ``i`` is entry ``i`` of the input of the MLP's output
  projection (``lm.arch.mlp_out(l)``): GELU output for GPT-2, ``act(gate) * up`` for gated MLPs
  (Llama, Gemma), the intermediate output for BERT;
* its **value vector** ``v_i`` (``(d,)``) is what the output projection adds per unit of
  ``m_i``: column ``i`` of an ``nn.Linear`` weight, row ``i`` of a GPT-2 ``Conv1D`` weight;
* the MLP output is ``sum_i m_i v_i`` (+ bias): the **sub-updates** ``m_i v_i``, scored by
  ``|m_i| * ||v_i||`` at the prediction position (Geva et al. 2022).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models import LM
from ..models.finite import check_finite
from ..runmode import progress_bar
from .resume import (
    ProbeBatch,
    forward,
    map_batches,
    naming_prompts,
    probe_batches,
    probe_frame,
    target_tokens,
)

__all__ = [
    "TopNeurons",
    "mlp_width",
    "neuron_scores",
    "prediction_and_target",
    "random_neurons",
    "score_batches",
    "top_neurons",
    "value_vector_logits",
    "value_vector_tokens",
    "value_vectors",
]


# --- value vectors ----------------------------------------------------------------------------

def value_vectors(lm: LM, layer: int) -> torch.Tensor:
    """Return the value vectors of one layer's MLP neurons: ``(d_ff, d)``, a view of the weight.

    ``nn.Linear`` stores ``(d, d_ff)`` (the vectors are its columns); GPT-2's ``Conv1D`` stores
    ``(d_ff, d)`` (its rows).
    """
    module = lm.arch.mlp_out(layer)
    weight = getattr(module, "weight", None)
    if weight is not None and weight.device.type == "meta":
        raise ValueError(f"{lm.name} layer {layer}: the MLP weights are offloaded (a device map "
                         "with 'cpu' or 'disk' entries); the interventions read them directly: "
                         "load the model onto devices that hold it whole")
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
    return torch.stack([value_vectors(lm, layer).float().norm(dim=1).to(lm.device)
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
            True: read ``v`` as if it were the residual stream, through the final norm (BERT:
            the MLM transform) and the full head (``lm.head``: bias, soft-capping). With a norm
            that has a bias (GPT-2, BERT) this adds the same offset to every vector.
    """
    weights = value_vectors(lm, layer)  # on this layer's device
    index = torch.as_tensor(neurons, dtype=torch.long, device=weights.device)
    vectors = weights[index].to(lm.device)
    if signs is not None:
        vectors = vectors * torch.as_tensor(signs, device=lm.device, dtype=vectors.dtype)[:, None]
    if through_norm:
        return lm.head.logits(lm.head.normalize(vectors))
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
        target_rank: ``(n_probes,)`` int64 rank of ``target_token`` (0 = top); None without
            targets.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    activations: torch.Tensor
    pred_token: torch.Tensor
    pred_prob: torch.Tensor
    target_prob: torch.Tensor | None
    target_rank: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> TopNeurons:
        """Move every tensor to ``device``."""
        return TopNeurons(*(None if t is None else t.to(device) for t in (
            self.indices, self.scores, self.activations, self.pred_token, self.pred_prob,
            self.target_prob, self.target_rank)))


def prediction_and_target(pred: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Tracked tokens: ``(rows, 1)`` the prediction, or ``(rows, 2)`` prediction and target."""
    return pred[:, None] if targets is None else torch.stack([pred, targets], 1)


@torch.no_grad()
def score_batches(lm: LM, batches: list[ProbeBatch], n_probes: int,
                  targets: torch.Tensor | None, k: int | None,
                  progress: bool = False) -> TopNeurons | torch.Tensor:
    """One clean forward per batch: the top-``k`` neurons of every layer for each probe.

    Args:
        lm: the model.
        batches: :func:`~memrecall.interventions.resume.probe_batches` of the probes (split in
            place on out-of-memory).
        n_probes: number of probes (rows of the outputs).
        targets: ``(n_probes,)`` target tokens, or None.
        k: neurons per layer, capped at the MLP width; None: every neuron's score.
        progress: show a progress bar.

    Returns:
        A :class:`TopNeurons` on the model's device; with ``k=None`` the ``(n_probes, n_layers,
        d_ff)`` scores instead.
    """
    norms = _value_norms(lm)  # (n_layers, d_ff)
    d_ff = norms.shape[1]
    keep = d_ff if k is None else min(k, d_ff)
    shape = (n_probes, lm.n_layers, keep)
    indices = torch.zeros(shape, dtype=torch.long, device=lm.device)
    scores = torch.zeros(shape, device=lm.device)
    activations = torch.zeros(shape, device=lm.device)
    pred_token = torch.zeros(n_probes, dtype=torch.long, device=lm.device)
    probs = torch.zeros(n_probes, 1 if targets is None else 2, device=lm.device)
    ranks = torch.zeros(n_probes, 1 if targets is None else 2, dtype=torch.long, device=lm.device)

    def run(batch: ProbeBatch):
        normed, acts = forward(lm, batch, activations=True)
        acts = acts.float().transpose(0, 1)  # (batch, n_layers, d_ff)
        score = acts.abs() * norms
        pred, pred_prob = lm.head.predict(normed)
        # a NaN or inf logit makes the normaliser, so this probability, non-finite
        check_finite(lm, pred_prob.view(1, -1), "logit", layers=[lm.n_layers - 1],
                     rows=batch.rows)
        tokens = prediction_and_target(pred, None if targets is None else targets[batch.rows])
        rank, prob = lm.head.rank_and_prob(normed, tokens)
        if k is None:
            return score, None, None, pred, rank, prob
        top = score.topk(keep, dim=-1)
        return top.values, top.indices, acts.gather(-1, top.indices), pred, rank, prob

    bar = progress_bar(total=n_probes, desc=f"score neurons {lm.name}", unit="probe",
                       disable=not progress)
    with bar:
        for batch, (score, index, act, pred, rank, prob) in map_batches(lm, batches, run):
            scores[batch.rows] = score
            if index is not None:
                indices[batch.rows], activations[batch.rows] = index, act
            pred_token[batch.rows], ranks[batch.rows], probs[batch.rows] = pred, rank, prob
            bar.update(len(batch.rows))
    if k is None:
        return scores
    return TopNeurons(indices=indices, scores=scores, activations=activations,
                      pred_token=pred_token, pred_prob=probs[:, 0],
                      target_prob=None if targets is None else probs[:, 1],
                      target_rank=None if targets is None else ranks[:, 1])


def neuron_scores(lm: LM, probes: pd.DataFrame | Sequence[str], *,
                  batch_size: int | None = None) -> torch.Tensor:
    """Every neuron's score ``|m_i| * ||v_i||`` at each probe's prediction position.

    Returns:
        ``(n_probes, n_layers, d_ff)`` float32 on CPU (mind the memory for many probes; use
        :func:`top_neurons` for the top ones only).
    """
    frame = probe_frame(probes)
    prompts = frame["prompt"].astype(str).tolist()
    batches = probe_batches(lm, prompts, batch_size)
    with naming_prompts(prompts):
        return score_batches(lm, batches, len(frame), None, None).cpu()


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
    frame = probe_frame(probes)
    prompts = frame["prompt"].astype(str).tolist()
    batches = probe_batches(lm, prompts, batch_size)
    show = progress if progress is not None else len(frame) > 64
    with naming_prompts(prompts):
        return score_batches(lm, batches, len(frame), target_tokens(lm, frame), k,
                             show).to("cpu")


# --- random neurons ---------------------------------------------------------------------------

def _seed_for(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def random_neurons(n: int, n_layers: int, d_ff: int, k: int, seed: int) -> torch.Tensor:
    """Draw ``k`` distinct neurons uniformly per probe and layer, reproducibly.

    Each layer's draws come from a ``torch.Generator`` seeded from ``(seed, layer)``, so a
    layer gets the same neurons whatever else is drawn, and the sets are nested in ``k``
    (the first ``j`` of a ``k``-draw are the ``j``-draw), like top-k sets.

    Returns:
        ``(n, n_layers, k)`` int64 on CPU.
    """
    out = torch.empty(n, n_layers, k, dtype=torch.long)
    for layer in range(n_layers):
        generator = torch.Generator().manual_seed(_seed_for(seed, layer))
        out[:, layer] = torch.rand(n, d_ff, generator=generator).topk(k, dim=-1).indices
    return out
