"""The (configuration) keys of a knockout sweep's rows, and their summary over probes."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SWEEP_KEYS", "summarize_sweep"]

SWEEP_KEYS = ["control", "k_requested", "k", "start_layer", "end_layer", "window"]
"""What identifies a configuration in a sweep's rows (layers 0-based)."""


def summarize_sweep(detail: pd.DataFrame, group_column: str | None = "group") -> pd.DataFrame:
    """Means over probes, per ([group,] configuration).

    Returns:
        ``[group,]`` :data:`SWEEP_KEYS`, ``n_probes, changed_pct`` (% of predictions changed),
        ``pred_prob_change`` (mean change of the clean prediction's probability, percentage
        points) and, with targets, ``target_rank_change`` (mean, after - before) and
        ``target_prob_change`` (mean, percentage points of absolute probability). Confidence
        intervals: :func:`memrecall.analysis.knockout_table`.

    Regroup differently by adding columns to ``detail`` first (e.g. group by ``is_memorized``
    with ``group_column="is_memorized"``).
    """
    keys = ([group_column] if group_column and group_column in detail.columns else []) \
        + SWEEP_KEYS
    detail = detail.assign(
        changed_pct=100 * detail["changed"].astype(np.float64),
        pred_prob_change=100 * (detail["pred_prob"].astype(np.float64)
                                - detail["base_pred_prob"]))
    aggregations = {"n_probes": ("probe", "size"), "changed_pct": ("changed_pct", "mean"),
                    "pred_prob_change": ("pred_prob_change", "mean")}
    if "target_prob_change" in detail.columns:
        aggregations["target_rank_change"] = ("target_rank_change", "mean")
        aggregations["target_prob_change"] = ("target_prob_change", "mean")
    return detail.groupby(keys, sort=False).agg(**aggregations).reset_index()
