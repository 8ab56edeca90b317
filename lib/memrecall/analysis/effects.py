"""Effect sizes with 95% intervals, and p-values, for the claims (:mod:`.claims`).

Cliff's delta ``P(a > b) - P(a < b)`` with a percentile bootstrap interval (each group resampled
on its own) and the two-sided Mann-Whitney p; a ratio of means with a bootstrap interval; Pearson
and Spearman r with Fisher-z intervals. Every function returns ``value, ci_low, ci_high,
p_value, n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from .projection import compare_groups

__all__ = ["CI", "N_BOOT", "cliffs_delta", "correlation", "no_effect", "percentile_interval",
           "ratio_of_means"]

N_BOOT = 2000
CI = 0.95


def _clean(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[~np.isnan(values)]


def _resample(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return values[rng.integers(0, len(values), size=(n_boot, len(values)))]


def percentile_interval(boots: np.ndarray, ci: float = CI) -> tuple[float, float]:
    """The percentile interval of bootstrap values (non-finite ones dropped)."""
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots[np.isfinite(boots)], [alpha, 1 - alpha])
    return float(lo), float(hi)


def no_effect(n: int = 0) -> dict:
    """A statistic that could not be measured: NaNs, with its ``n``."""
    return {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "n": n}


def cliffs_delta(a: Any, b: Any, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Cliff's delta ``P(a > b) - P(a < b)`` with a bootstrap interval and Mann-Whitney p.

    Each sample is resampled on its own (``n_boot`` times, seeded); the interval is the
    percentile interval of the resampled deltas. NaNs are dropped.

    Returns:
        ``value, ci_low, ci_high, p_value, n`` (``n = n_a + n_b``); NaNs when a sample has
        fewer than 2 values.
    """
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        return no_effect(len(a) + len(b))
    test = compare_groups(a, b)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (len(a) + len(b)))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        both = np.concatenate([_resample(a, m, rng), _resample(b, m, rng)], axis=1)
        u = sps.rankdata(both, axis=1)[:, :len(a)].sum(axis=1) - len(a) * (len(a) + 1) / 2
        boots[start:start + m] = 2 * u / (len(a) * len(b)) - 1
    lo, hi = percentile_interval(boots)
    return {"value": test["rank_biserial"], "ci_low": lo, "ci_high": hi,
            "p_value": test["p_value"], "n": len(a) + len(b)}


def ratio_of_means(a: Any, b: Any, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """``mean(a) / mean(b)`` with a bootstrap interval (samples resampled on their own).

    ``p_value``: two-sided Mann-Whitney of ``a`` against ``b``.
    """
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2 or b.mean() == 0:
        return no_effect(len(a) + len(b))
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = _resample(a, n_boot, rng).mean(1) / _resample(b, n_boot, rng).mean(1)
    lo, hi = percentile_interval(boots)
    return {"value": float(a.mean() / b.mean()), "ci_low": lo, "ci_high": hi,
            "p_value": compare_groups(a, b)["p_value"], "n": len(a) + len(b)}


def correlation(x: Any, y: Any, method: str = "pearson") -> dict:
    """Pearson or Spearman r of ``x`` and ``y`` (pairs with NaN dropped), Fisher-z interval."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return no_effect(n)
    test = sps.pearsonr(x, y) if method == "pearson" else sps.spearmanr(x, y)
    r = float(test.statistic)
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), sps.norm.ppf(0.5 + CI / 2) \
        / np.sqrt(n - 3)
    return {"value": r, "ci_low": float(np.tanh(z - half)), "ci_high": float(np.tanh(z + half)),
            "p_value": float(test.pvalue), "n": n}


