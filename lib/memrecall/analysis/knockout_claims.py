"""The knockout claims of the paper as statistics with intervals and p-values: numbers, no prose.

Each function reads the per-probe sweep (:func:`memrecall.interventions.knockout_sweep` with
``per_probe=True``; layers 0-based) and returns one dict with :data:`CLAIM_KEYS`:

* ``statistic``: a short name of what is measured;
* ``value``: the statistic on the probes;
* ``ci_low``, ``ci_high``: a 95% percentile bootstrap interval over probes (seeded, 2000
  resamples by default);
* ``p_value``: two-sided, against 0; from an exact test where one exists (Fisher's, for two
  groups' counts of changed predictions), otherwise :func:`bootstrap_p_value`;
* ``n``: the probes used.

With fewer than 2 probes (or windows) to resample, ``value`` is the point (or NaN) and the
interval and p-value are NaN: a bootstrap of one probe is no evidence.

* :func:`layer1_vs_other_layers`: the paper's "layer 1 dominates" (Figure 3);
* :func:`group_difference`: is an effect specific to memorized predictions?
* :func:`depth_slope_stat`: the early fall and the late flattening of Figure 7.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .knockouts import depth_slope_samples

__all__ = ["CLAIM_KEYS", "bootstrap_p_value", "claim_stats", "depth_slope_stat",
           "group_difference", "layer1_vs_other_layers", "resample_means"]

CLAIM_KEYS = ("statistic", "value", "ci_low", "ci_high", "p_value", "n")
"""The keys every claim statistic has (some add their own after these)."""


def bootstrap_p_value(boots: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the statistic is 0".

    ``2 * min(P(boot <= 0), P(boot >= 0))`` over the resampled statistics, clipped to
    ``[1 / n_boot, 1]`` (a p-value below one resample in ``n_boot`` cannot be resolved).

    Args:
        boots: ``(n_boot,)`` the statistic on each resample.
    """
    boots = np.asarray(boots, dtype=np.float64)
    n_boot = len(boots)
    if n_boot == 0:
        raise ValueError("no resamples")
    p = 2 * min(float((boots <= 0).mean()), float((boots >= 0).mean()))
    return float(np.clip(p, 1 / n_boot, 1.0))


def claim_stats(statistic: str, value: float, boots: np.ndarray | None, n: int,
                ci: float) -> dict:
    """The :data:`CLAIM_KEYS` dict; interval and p from ``boots`` (None: not resampled, NaN)."""
    if boots is None or len(boots) == 0:
        return {"statistic": statistic, "value": float(value), "ci_low": np.nan,
                "ci_high": np.nan, "p_value": np.nan, "n": int(n)}
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return {"statistic": statistic, "value": float(value), "ci_low": float(lo),
            "ci_high": float(hi), "p_value": bootstrap_p_value(boots), "n": int(n)}


def _rows(detail: pd.DataFrame, control: str, window: int, group: str | None,
          k: int | None) -> pd.DataFrame:
    """Rows of one control, window size, group and k (a single k must remain)."""
    rows = detail[(detail["control"] == control) & (detail["window"] == window)]
    if group is not None and "group" in rows.columns:
        rows = rows[rows["group"] == group]
    if k is not None:
        rows = rows[rows["k_requested"] == k]
    if rows["k_requested"].nunique() > 1:
        raise ValueError(f"several k in the sweep ({sorted(rows['k_requested'].unique())}): "
                         "pass k=")
    return rows


def resample_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, L)`` column means of ``n_boot`` resamples of the rows of ``(n, L)`` values."""
    n = len(values)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    return counts @ values / n


def layer1_vs_other_layers(detail: pd.DataFrame, control: str, group: str | None = "memorized",
                           *, k: int | None = None, ci: float = 0.95, n_boot: int = 2000,
                           seed: int = 0) -> dict:
    """% changed by knocking out layer 1 alone minus that of the strongest other single layer.

    Every resample of probes re-chooses the strongest other layer (the maximum is taken after
    resampling), so the interval carries the optimism of picking the largest of many layers.
    The paper expects a positive value (Figure 3: 99% against at most 20%, non-dominant).

    Args:
        detail: the per-probe sweep.
        control: the control (``non_dominant``, ``dominant``, ``random``).
        group: the probes' group (None: every probe, or no ``group`` column).
        k: ``k_requested`` to read (None: the sweep must hold one k).
        ci: coverage of the interval.
        n_boot: bootstrap resamples.
        seed: seeds the resampling.

    Returns:
        :data:`CLAIM_KEYS` (value in points of %; p-value: :func:`bootstrap_p_value`) and
        ``other_layer``, the strongest other single layer on all probes (0-based; -1 and a
        NaN value when layer 1 or every other layer is missing).
    """
    rows = _rows(detail, control, 1, group, k)
    statistic = f"layer 1 minus strongest other single layer, % changed ({control}, {group})"
    matrix = rows.pivot(index="probe", columns="start_layer", values="changed")
    if 0 not in matrix.columns or len(matrix.columns) < 2:
        return {**claim_stats(statistic, np.nan, None, len(matrix), ci), "other_layer": -1}
    others = [c for c in matrix.columns if c != 0]
    values = 100 * matrix[[0, *others]].to_numpy(np.float64)  # (n_probes, 1 + others)
    means = values.mean(0)
    boots = None
    if len(values) > 1:
        resampled = resample_means(values, n_boot, np.random.default_rng(seed))
        boots = resampled[:, 0] - resampled[:, 1:].max(1)
    strongest = int(np.argmax(means[1:]))
    return {**claim_stats(statistic, means[0] - means[1 + strongest], boots, len(values), ci),
            "other_layer": int(others[strongest])}


def group_difference(detail: pd.DataFrame, control: str, a: str = "memorized",
                     b: str = "non-memorized", start_layer: int = 0, window: int = 1, *,
                     k: int | None = None, ci: float = 0.95, n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """% changed in group ``a`` minus group ``b``, for one knockout window.

    The groups hold different probes, so each is resampled on its own (a stratified
    bootstrap). The p-value is exact: Fisher's two-sided test on the 2 x 2 table of changed
    and unchanged predictions per group (``scipy.stats.fisher_exact``).

    Args:
        detail: the per-probe sweep (with a ``group`` column).
        control: the control.
        a: the first group (the paper's question: ``memorized``).
        b: the group it is compared with.
        start_layer: the window's first layer (0-based; 0 = layer 1).
        window: the window's size in layers.
        k: ``k_requested`` to read (None: the sweep must hold one k).
        ci: coverage of the interval.
        n_boot: bootstrap resamples.
        seed: seeds the resampling.

    Returns:
        :data:`CLAIM_KEYS` (value in points of %; ``n`` = ``n_a + n_b``) and ``n_a``, ``n_b``;
        NaN numbers when a group is empty.
    """
    rows = _rows(detail, control, window, None, k)
    rows = rows[rows["start_layer"] == start_layer]
    statistic = (f"{a} minus {b}, % changed ({control}, {window}-layer window from 0-based "
                 f"layer {start_layer})")
    changed_a = rows.loc[rows["group"] == a, "changed"].to_numpy(np.float64)
    changed_b = rows.loc[rows["group"] == b, "changed"].to_numpy(np.float64)
    n_a, n_b = len(changed_a), len(changed_b)
    sizes = {"n_a": n_a, "n_b": n_b}
    if n_a == 0 or n_b == 0:
        return {**claim_stats(statistic, np.nan, None, n_a + n_b, ci), **sizes}
    value = 100 * (changed_a.mean() - changed_b.mean())
    boots = None
    if n_a > 1 and n_b > 1:
        rng = np.random.default_rng(seed)
        boots = 100 * (resample_means(changed_a[:, None], n_boot, rng)[:, 0]
                       - resample_means(changed_b[:, None], n_boot, rng)[:, 0])
    out = claim_stats(statistic, value, boots, n_a + n_b, ci)
    hits_a, hits_b = int(changed_a.sum()), int(changed_b.sum())
    out["p_value"] = float(scipy_stats.fisher_exact(
        [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]], alternative="two-sided").pvalue)
    return {**out, **sizes}


def depth_slope_stat(detail: pd.DataFrame, n_layers: int, part: str = "early",
                     control: str = "non_dominant", window: int = 3,
                     group: str | None = "memorized", split: float = 0.4, *,
                     k: int | None = None, ci: float = 0.95, n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """Slope of % changed against relative depth, early or late, for one line of windows.

    The numbers of :func:`memrecall.analysis.depth_slopes` (the same resamples, so the same
    interval) with a p-value. Early: windows from the second layer to ``split`` of the depth
    (the paper: the effect falls, a negative slope); late: the rest (the paper: it flattens).

    Args:
        detail: the per-probe sweep.
        n_layers: the model's layers (for relative depth).
        part: ``early`` or ``late``.
        control: the control (the paper's Figure 7: ``non_dominant``).
        window: the window size (Figure 7: 3).
        group: the probes' group (None: every probe, or no ``group`` column).
        split: the relative depth that ends the early part.
        k: ``k_requested`` to read (None: the sweep must hold one k).
        ci: coverage of the interval.
        n_boot: bootstrap resamples.
        seed: seeds the resampling.

    Returns:
        :data:`CLAIM_KEYS` (value in points of % per unit of relative depth; p-value:
        :func:`bootstrap_p_value`) and ``n_windows``, the windows in the part (fewer than 2:
        NaN numbers).
    """
    if part not in ("early", "late"):
        raise ValueError(f"part must be 'early' or 'late', not {part!r}")
    rows = _rows(detail, control, window, group, k)
    statistic = (f"{part} slope of % changed per unit depth ({control}, {window}-layer windows, "
                 f"{group}, split {split:g})")
    if rows.empty:
        return {**claim_stats(statistic, np.nan, None, 0, ci), "n_windows": 0}
    samples = depth_slope_samples(rows, n_layers, split, "changed", n_boot, seed)
    n = samples["n_probes"]
    boots = samples[f"{part}_boot"] if n > 1 else None
    return {**claim_stats(statistic, samples[f"{part}_slope"], boots, n, ci),
            "n_windows": samples[f"n_{part}"]}
