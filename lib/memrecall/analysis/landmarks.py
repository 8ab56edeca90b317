"""Per-layer mean curves as the paper drew them (Figures 2 and 4), and their landmarks.

The paper's curves are *arithmetic* means of the prediction's rank (our other figures show
geometric means). We compare curves through a few landmarks that need no alignment of layers:
the relative depth at which the mean rank first drops below 1, the final and peak
probabilities, and the first layer's mean rank. The same functions read the paper's digitized curves
(:mod:`memrecall.data.paper`), so both sides are measured alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .projection import group_order, normalised_depth, stack

__all__ = ["LANDMARK_COLUMNS", "curve_landmarks", "mean_curves"]

LANDMARK_COLUMNS = ["group", "first_rank", "depth_below_1", "final_prob", "peak_prob",
                    "peak_depth"]


def mean_curves(labelled: pd.DataFrame, group_col: str = "group") -> pd.DataFrame:
    """Arithmetic mean rank and probability of the final prediction, per group and layer.

    Args:
        labelled: projection results with a group column (``stats.label_groups``).
        group_col: the grouping column.

    Returns:
        ``group, layer`` (0-based), ``depth, rank, prob, n`` (``depth`` as
        ``stats.normalised_depth``, the paper's ``layer / n_layers``).
    """
    parts = []
    for group in group_order(labelled[group_col]):
        rows = labelled[labelled[group_col] == group]
        ranks = stack(rows["pred_rank"]).astype(np.float64)
        probs = stack(rows["pred_prob"]).astype(np.float64)
        parts.append(pd.DataFrame({
            "group": group, "layer": np.arange(ranks.shape[1]),
            "depth": normalised_depth(ranks.shape[1]), "rank": ranks.mean(axis=0),
            "prob": probs.mean(axis=0), "n": len(rows),
        }))
    return pd.concat(parts, ignore_index=True)


def curve_landmarks(curves: pd.DataFrame, group_col: str = "group") -> pd.DataFrame:
    """Landmarks of mean curves, ours (:func:`mean_curves`) or the paper's (digitized).

    Args:
        curves: one row per group and layer with ``depth``, ``rank`` and ``prob``.
        group_col: the grouping column.

    Returns:
        One row per group: ``first_rank`` (mean rank at the first layer), ``depth_below_1``
        (first relative depth with mean rank < 1; the last layer's rank is 0 by definition, so
        there always is one), ``final_prob``, ``peak_prob`` and its ``peak_depth``.
    """
    rows = []
    for group in group_order(curves[group_col]):
        part = curves[curves[group_col] == group].sort_values("depth")
        depth, rank, prob = (part[c].to_numpy(np.float64) for c in ("depth", "rank", "prob"))
        below = np.flatnonzero(rank < 1)
        peak = int(np.argmax(prob))
        rows.append({"group": group, "first_rank": rank[0],
                     "depth_below_1": depth[below[0]] if len(below) else np.nan,
                     "final_prob": prob[-1], "peak_prob": prob[peak], "peak_depth": depth[peak]})
    return pd.DataFrame(rows, columns=LANDMARK_COLUMNS)
