"""Notebook 07's prose, computed: where blocking content words hurts, and how it relates to the FFN.

* :func:`promotion_medians`: each group's median promotion layer (notebook 03's), 1-based;
* :func:`strongest_windows`: per group, the window whose blocked content words lower the
  prediction's probability most, with its interval and relative depth;
* :func:`where_lines`: those windows as sentences, beside the memorized group's promotion;
* :func:`ffn_relation`: one paragraph from ``knockouts_<model>.csv`` and
  ``attention_<model>.csv``: the single layers where each intervention changes most memorized
  predictions, and how alike the two depth profiles are (Spearman's rho).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..analysis.projection import group_order

__all__ = ["ffn_relation", "promotion_medians", "strongest_windows", "where_lines"]


def promotion_medians(probes: pd.DataFrame) -> dict[str, float]:
    """Group -> median promotion layer of its probes, 1-based (probes with ``promotion_layer``)."""
    medians = probes.groupby("group")["promotion_layer"].median() + 1
    return {group: float(medians[group]) for group in group_order(medians.index)}


def strongest_windows(table: pd.DataFrame, n_layers: int, window: int,
                      sources: str = "content") -> pd.DataFrame:
    """Per group, the window where blocking ``sources`` lowers the prediction's probability most.

    Args:
        table: one model's :func:`memrecall.analysis.attention_table` (1-based layers).
        n_layers: the model's layers (for relative depth: first layer / layers).
        window: the window size.
        sources: the source set.

    Returns:
        ``group, start_layer, end_layer, depth, prob_change_rel_pct, ci_low, ci_high,
        changed_pct, n_probes``, one row per group present. The window is picked as the
        lowest point of the curve, so its value is an optimistic estimate of the largest effect.
    """
    rows = table[(table["window"] == window) & (table["sources"] == sources)].reset_index(drop=True)
    if rows.empty:
        return pd.DataFrame(columns=["group", "start_layer", "end_layer", "depth",
                                     "prob_change_rel_pct", "ci_low", "ci_high", "changed_pct",
                                     "n_probes"])
    lowest = rows.loc[rows.groupby("group", sort=False)["prob_change_rel_pct"].idxmin()]
    lowest = lowest.assign(depth=lowest["start_layer"] / n_layers)
    order = {g: i for i, g in enumerate(group_order(lowest["group"]))}
    lowest = lowest.sort_values("group", key=lambda s: s.map(order))
    return lowest[["group", "start_layer", "end_layer", "depth", "prob_change_rel_pct",
                   "ci_low", "ci_high", "changed_pct", "n_probes"]].reset_index(drop=True)


def where_lines(model: str, table: pd.DataFrame, n_layers: int, window: int,
                promotion: dict[str, float]) -> list[str]:
    """Sentences: where blocking the content words hurts each group most, and its promotion."""
    lines = [f"{model} ({n_layers} layers; {window}-layer windows, content words blocked):"]
    for row in strongest_windows(table, n_layers, window).itertuples():
        layers = (f"layer {row.start_layer}" if row.start_layer == row.end_layer
                  else f"layers {row.start_layer}-{row.end_layer}")
        promoted = promotion.get(row.group, np.nan)
        where = ("" if not np.isfinite(promoted) else
                 f"; median promotion layer {promoted:g} (window "
                 + ("ends before it" if row.end_layer < promoted else
                    "starts after it" if row.start_layer > promoted else "spans it") + ")")
        lines.append(f"  {row.group} (n = {row.n_probes}): lowest at {layers} (relative depth "
                     f"{row.depth:.2f}), probability {row.prob_change_rel_pct:+.1f}% "
                     f"[{row.ci_low:+.1f}, {row.ci_high:+.1f}], {row.changed_pct:.0f}% of "
                     f"predictions changed{where}")
    return lines


def _single_layers(frame: pd.DataFrame) -> pd.Series:
    """1-based layer -> % changed, single-layer windows."""
    rows = frame[frame["start_layer"] == frame["end_layer"]]
    return rows.set_index("start_layer")["changed_pct"].sort_index()


def ffn_relation(model: str, knockouts_csv: str | Path, attention_csv: str | Path,
                 n_layers: int, group: str = "memorized", control: str = "non_dominant",
                 sources: str = "content") -> str:
    """One paragraph relating the FFN knockouts (notebook 05) to the attention edges (07).

    From the two CSVs alone, for ``group``'s single-layer windows: the layer where zeroing all
    but the 10 dominant sub-updates (``control``) changes most predictions, the layer where
    blocking the edges to ``sources`` does, their relative depths, and Spearman's rho between the
    two per-layer profiles. A file that is missing or lacks the group gives a sentence saying so.
    """
    missing = [Path(p).name for p in (knockouts_csv, attention_csv) if not Path(p).is_file()]
    if missing:
        return f"{model}: no comparison ({', '.join(missing)} not written yet)."
    ffn = pd.read_csv(knockouts_csv)
    ffn = _single_layers(ffn[(ffn["group"] == group) & (ffn["control"] == control)])
    att = pd.read_csv(attention_csv)
    att = _single_layers(att[(att["group"] == group) & (att["sources"] == sources)])
    layers = ffn.index.intersection(att.index)
    if len(layers) < 3:
        return f"{model}: no comparison (fewer than 3 single layers with {group} probes in both)."
    ffn, att = ffn[layers], att[layers]
    top_ffn, top_att = int(ffn.idxmax()), int(att.idxmax())
    rho, p = scipy_stats.spearmanr(ffn.to_numpy(), att.to_numpy())
    order = ("at the same layer as" if top_att == top_ffn
             else "earlier than" if top_att < top_ffn else "later than")
    return (f"{model}: zeroing all but the 10 dominant FFN sub-updates of one layer changes most "
            f"{group} predictions at layer {top_ffn} ({ffn[top_ffn]:.0f}%, relative depth "
            f"{top_ffn / n_layers:.2f}); blocking the attention edges to the {sources} words in "
            f"one layer changes most at layer {top_att} ({att[top_att]:.0f}%, relative depth "
            f"{top_att / n_layers:.2f}), {order} the FFN peak. Over the {len(layers)} layers the "
            f"two profiles have Spearman rho = {rho:+.2f} (p = {p:.2g}).")
