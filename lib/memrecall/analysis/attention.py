"""The attention-edge sweep's read-outs per group, source set and window, with intervals.

From :func:`memrecall.interventions.attention_sweep`'s rows: per (group, source set, window size,
start layer) the % of predictions that change and the mean relative change of the clean
prediction's probability, ``100 * (after - before) / before`` (Geva et al. 2023's Figure 2
read-out), with a percentile bootstrap interval over probes (the same resamples for every start
layer of a curve). A probe whose source set is empty (``n_sources == 0``: nothing to block) is
left out of that set's rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .attention_claims import relative_change
from .projection import bootstrap_mean_ci

__all__ = ["ATTENTION_COLUMNS", "attention_table"]

ATTENTION_COLUMNS = ["group", "sources", "window", "start_layer", "end_layer", "n_probes",
                     "changed_pct", "prob_change_rel_pct", "ci_low", "ci_high"]


def attention_table(detail: pd.DataFrame, group_column: str = "group", ci: float = 0.95,
                    n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """:data:`ATTENTION_COLUMNS` rows, layers **1-based** (``results/<profile>/attention_*.csv``).

    Args:
        detail: the sweep's per-probe rows (``probe``, the configuration, ``n_sources``,
            ``changed``, ``base_pred_prob``, ``pred_prob``; a group column if any, else every
            row is group ``"all"``).
        group_column: the column naming each probe's group.
        ci: coverage of the intervals.
        n_boot: bootstrap resamples.
        seed: seeds the resampling.
    """
    groups = detail[group_column] if group_column in detail else pd.Series("all", detail.index)
    rows = detail.assign(group=groups.to_numpy(), rel=relative_change(detail),
                         changed_pct=100 * detail["changed"].astype(np.float64))
    rows = rows[rows["n_sources"] > 0]
    frames = []
    for (group, sources, window), part in rows.groupby(["group", "sources", "window"],
                                                       sort=False):
        rel_matrix = part.pivot(index="probe", columns="start_layer", values="rel")
        changed = part.pivot(index="probe", columns="start_layer", values="changed_pct")
        mean, lo, hi = bootstrap_mean_ci(rel_matrix.to_numpy(), ci, n_boot, seed)
        starts = rel_matrix.columns.to_numpy()
        frames.append(pd.DataFrame({
            "group": group, "sources": sources, "window": window, "start_layer": starts + 1,
            "end_layer": starts + window, "n_probes": len(rel_matrix),
            "changed_pct": changed[starts].mean().to_numpy(), "prob_change_rel_pct": mean,
            "ci_low": lo, "ci_high": hi}))
    if not frames:
        return pd.DataFrame(columns=ATTENTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[ATTENTION_COLUMNS]
