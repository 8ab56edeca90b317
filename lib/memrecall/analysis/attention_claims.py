"""Where memorized predictions read their words from: the attention-edge claims, with intervals.

Every statistic reads the per-probe attention sweep
(:func:`memrecall.interventions.attention_sweep`; layers 0-based) at one window size (the one
nearest 20% of the depth, Geva et al. 2023's) and works on each probe's **relative change of its
prediction's probability**, ``100 * (after - before) / before`` (:func:`relative_change`), averaged
over the probe's windows first, so that every probe counts once:

* :func:`blocked_part`: memorized probes, the edges to their content words blocked in windows that
  end at or before the probe's promotion layer (notebook 03: the first layer whose output ranks
  the prediction first), or that start after it;
* :func:`before_vs_after`: the same probes, before minus after (paired);
* :func:`group_contrast`: memorized minus non-memorized (or Wikipedia), over every window
  (independent groups, each resampled on its own);
* :func:`source_contrast`: memorized probes, content words minus function words (paired).

Each returns :data:`~memrecall.analysis.knockout_claims.CLAIM_KEYS` (value in points of %, a 95%
percentile bootstrap interval over probes, a bootstrap p-value, ``n`` probes). A probe with
nothing to block in a set (``n_sources == 0``) or no window in a part is left out of that
statistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .knockout_claims import claim_stats, resample_means

__all__ = ["before_vs_after", "blocked_part", "group_contrast", "probe_means",
           "relative_change", "source_contrast"]

PARTS = ("before", "after")


def relative_change(detail: pd.DataFrame) -> np.ndarray:
    """Per row, ``100 * (pred_prob - base_pred_prob) / base_pred_prob`` (NaN where it was 0)."""
    before = detail["base_pred_prob"].to_numpy(np.float64)
    after = detail["pred_prob"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, 100 * (after - before) / before, np.nan)


def probe_means(detail: pd.DataFrame, window: int, sources: str = "content",
                group: str | None = None, promotion: pd.Series | None = None,
                part: str | None = None) -> pd.Series:
    """Each probe's mean relative change over its windows of one size and source set.

    Args:
        detail: the per-probe attention sweep.
        window: the window size in layers.
        sources: the source set.
        group: keep this group's probes (None: every probe).
        promotion: per probe (index = ``probe``), its 0-based promotion layer; needed for
            ``part``.
        part: None for every window; ``before``: windows ending at or before the probe's
            promotion layer; ``after``: windows starting after it.

    Returns:
        probe -> mean relative change in % (probes with no such window, or nothing to block,
        are absent).
    """
    rows = detail[(detail["window"] == window) & (detail["sources"] == sources)
                  & (detail["n_sources"] > 0)]
    if group is not None:
        rows = rows[rows["group"] == group]
    rows = rows.assign(rel=relative_change(rows))
    if part is not None:
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, not {part!r}")
        if promotion is None:
            raise ValueError("part needs each probe's promotion layer (promotion=)")
        layer = rows["probe"].map(promotion).to_numpy()
        inside = (rows["end_layer"].to_numpy() <= layer if part == "before"
                  else rows["start_layer"].to_numpy() > layer)
        rows = rows[inside]
    return rows.groupby("probe")["rel"].mean().dropna()


def _one_sample(values: np.ndarray, statistic: str, ci: float, n_boot: int, seed: int) -> dict:
    """The mean of per-probe values with its bootstrap interval (fewer than 2: no interval)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return claim_stats(statistic, np.nan, None, 0, ci)
    boots = (resample_means(values[:, None], n_boot, np.random.default_rng(seed))[:, 0]
             if len(values) > 1 else None)
    return claim_stats(statistic, values.mean(), boots, len(values), ci)


def blocked_part(detail: pd.DataFrame, window: int, promotion: pd.Series, part: str = "before",
                 group: str = "memorized", *, ci: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> dict:
    """Mean relative change of ``group``'s predictions, content words blocked ``part`` promotion.

    Negative: blocking the edges to the content words in those layers lowers the prediction.
    """
    values = probe_means(detail, window, "content", group, promotion, part).to_numpy()
    statistic = (f"mean relative change of the prediction's probability (%), edges to content "
                 f"words blocked in {window}-layer windows {part} the promotion layer ({group})")
    return _one_sample(values, statistic, ci, n_boot, seed)


def before_vs_after(detail: pd.DataFrame, window: int, promotion: pd.Series,
                    group: str = "memorized", *, ci: float = 0.95, n_boot: int = 2000,
                    seed: int = 0) -> dict:
    """Per probe, before minus after promotion (content words), paired; probes with both parts.

    Negative: blocking the content words hurts more in the layers up to promotion.
    """
    before = probe_means(detail, window, "content", group, promotion, "before")
    after = probe_means(detail, window, "content", group, promotion, "after")
    both = before.index.intersection(after.index)
    statistic = (f"relative change (%) with content words blocked before minus after the "
                 f"promotion layer, paired per probe ({window}-layer windows, {group})")
    return _one_sample((before[both] - after[both]).to_numpy(), statistic, ci, n_boot, seed)


def source_contrast(detail: pd.DataFrame, window: int, a: str = "content", b: str = "function",
                    group: str = "memorized", *, ci: float = 0.95, n_boot: int = 2000,
                    seed: int = 0) -> dict:
    """Per probe, the mean relative change with ``a`` blocked minus with ``b`` blocked (paired).

    Negative: the prediction depends on ``a`` more than on ``b``.
    """
    values_a = probe_means(detail, window, a, group)
    values_b = probe_means(detail, window, b, group)
    both = values_a.index.intersection(values_b.index)
    statistic = (f"relative change (%), {a} words blocked minus {b} words blocked, paired per "
                 f"probe, every {window}-layer window ({group})")
    return _one_sample((values_a[both] - values_b[both]).to_numpy(), statistic, ci, n_boot,
                       seed)


def group_contrast(detail: pd.DataFrame, window: int, a: str = "memorized",
                   b: str = "non-memorized", sources: str = "content", *, ci: float = 0.95,
                   n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean relative change of group ``a`` minus group ``b``, every window, ``sources`` blocked.

    The groups hold different probes, so each is resampled on its own. Negative: ``a``'s
    predictions depend on those words more than ``b``'s. Adds ``n_a``, ``n_b``.
    """
    values_a = probe_means(detail, window, sources, a).to_numpy()
    values_b = probe_means(detail, window, sources, b).to_numpy()
    statistic = (f"relative change (%) with {sources} words blocked, {a} minus {b}, every "
                 f"{window}-layer window")
    sizes = {"n_a": len(values_a), "n_b": len(values_b)}
    if len(values_a) == 0 or len(values_b) == 0:
        return {**claim_stats(statistic, np.nan, None, sizes["n_a"] + sizes["n_b"], ci),
                **sizes}
    boots = None
    if len(values_a) > 1 and len(values_b) > 1:
        rng = np.random.default_rng(seed)
        boots = (resample_means(values_a[:, None], n_boot, rng)[:, 0]
                 - resample_means(values_b[:, None], n_boot, rng)[:, 0])
    value = values_a.mean() - values_b.mean()
    return {**claim_stats(statistic, value, boots, len(values_a) + len(values_b), ci), **sizes}
