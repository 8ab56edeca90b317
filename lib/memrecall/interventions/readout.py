"""Read-outs of the interventions: sweep summaries as matrices and profiles, sub-updates as tokens.

* :func:`window_matrix`, :func:`window_panels`: a sweep summary as start-layer x end-layer
  matrices (for :func:`memrecall.figures.plot_heatmaps`);
* :func:`layer_profile`: 1-layer windows by layer (:func:`memrecall.figures.plot_knockout_lines`);
* :func:`prediction_rank_in_value_vectors`, :func:`sub_update_examples`: what the top sub-updates
  promote when their value vectors are read through the unembedding (Geva et al. 2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from ..models import LM
from ..models.head import LOGIT_CHUNK_BYTES
from .controls import control as control_entry
from .neurons import top_neurons, value_vector_logits, value_vector_tokens
from .resume import probe_frame

__all__ = ["layer_profile", "prediction_rank_in_value_vectors",
           "sub_update_examples", "window_matrix", "window_panels"]


# --- sweep summaries --------------------------------------------------------------------------


def window_matrix(summary: pd.DataFrame, *, control: str = "dominant", k: int | None = None,
                  group: str | None = None, value: str = "changed_pct",
                  n_layers: int | None = None) -> pd.DataFrame:
    """One (control, k, group) of a sweep summary as a start-layer x end-layer matrix.

    Args:
        summary: :func:`~memrecall.interventions.sweep.knockout_sweep` summary.
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


def window_panels(summary: pd.DataFrame, control: str = "dominant", value: str = "changed_pct",
                  groups: Sequence[str] | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """Every (k, group) matrix of one control, labelled for :func:`memrecall.figures.plot_heatmaps`.

    Args:
        summary: a sweep summary.
        control: the control shown.
        value: the summary column in the cells.
        groups: the groups (panel columns) in order; default: as they first appear in the
            summary (a sweep keeps its probes' order, and
            :func:`memrecall.analysis.knockout_probe_groups` orders them as
            :data:`memrecall.analysis.GROUPS`).

    Returns:
        ``{"10 dominant neurons per layer": {"memorized (n=100)": matrix, ...}, ...}``: rows of
        panels by k (ascending), columns by group.
    """
    rows = summary[summary["control"] == control]
    n_layers = int(summary["end_layer"].max() + 1)
    has_groups = "group" in rows.columns
    groups = list(groups) if groups is not None else (
        list(dict.fromkeys(rows["group"])) if has_groups else [None])
    label = control_entry(control).panel
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
                  value: str = "changed_pct") -> pd.DataFrame:
    """Windows of one size, by start layer: tidy rows for a line plot.

    Returns:
        Columns ``[group,] control, k (the requested k), layer`` (1-based start layer, for the
        plot's axis), ``n_probes`` and ``value``, sorted by layer.
    """
    rows = summary[summary["window"] == window]
    keys = (["group"] if "group" in rows.columns else []) + ["control"]
    out = rows[keys + ["k_requested", "start_layer", "n_probes", value]].rename(
        columns={"k_requested": "k"})
    out = out.assign(layer=out.pop("start_layer") + 1)
    return out[[*keys, "k", "layer", "n_probes", value]].sort_values(
        [*keys, "k", "layer"]).reset_index(drop=True)


# --- where the prediction sits in the top sub-updates -----------------------------------------

@torch.no_grad()
def prediction_rank_in_value_vectors(lm: LM, probes: pd.DataFrame | Sequence[str], k: int = 10,
                                     *, through_norm: bool = False,
                                     batch_size: int | None = None,
                                     tile_bytes: int = LOGIT_CHUNK_BYTES) -> pd.DataFrame:
    """Rank of the model's final prediction in the projections of each layer's top sub-updates.

    For each probe and layer, the ``k`` highest-scoring sub-updates ``m_i v_i`` at the
    prediction position are projected onto the vocabulary (:func:`value_vector_logits`, with the
    sign of ``m_i``: a negative activation promotes the bottom tokens of ``v_i``), and the rank
    of the final prediction is counted (0 = top; ties in its favour).

    Args:
        lm: the model.
        probes: probe frame or plain prompts.
        k: top sub-updates per layer.
        through_norm: see :func:`value_vector_logits`.
        batch_size: at most this many prompts per forward.
        tile_bytes: memory for one block of projections (value vectors x vocabulary); changes
            speed and memory, not the numbers.

    Returns:
        One row per probe, same order: the probe columns plus ``pred_token`` and numpy cells
        ``sub_update_neurons`` ``(n_layers, k)``, ``sub_update_pred_rank`` ``(n_layers, k)``
        (highest score first) and ``best_sub_update_pred_rank`` ``(n_layers,)`` (the best rank
        over the k sub-updates).
    """
    frame = probe_frame(probes).copy()
    top = top_neurons(lm, frame, k, batch_size=batch_size, progress=False).to(lm.device)
    n, n_layers, keep = top.indices.shape
    ranks = torch.zeros(n, n_layers, keep, dtype=torch.long, device=lm.device)
    tokens = top.pred_token[:, None].expand(n, keep).reshape(-1)
    chunk = max(1, tile_bytes // (4 * lm.vocab_size))
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
        [``target``,] ``prediction`` (decoded), ``layer`` (**1-based**, a table for people),
        ``sub_update`` (1 = highest score), ``neuron``, ``activation``, ``score``, ``promotes``
        (the tokens, joined by " | "), ``pred_rank``.
    """
    frame = probe_frame(probes)
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
