"""Numbers over the layer-wise projections of :func:`memrecall.project`: no prose, 0-based layers.

Everything a notebook needs to turn per-example, per-layer arrays into the numbers behind the
figures and tables: group labels, the *promotion layer* (when the final prediction reaches the top
for good), the *confidence boost* after it, per-layer group means with confidence intervals,
two-sample tests between groups. :mod:`memrecall.analysis.memorization` counts who memorizes what;
:mod:`memrecall.report.tables` turns the numbers into what people read.

Conventions:

* Layers are **0-based** everywhere in this module, like the per-layer arrays: layer ``i`` is the
  output of block ``i`` (``promotion_layer == 0`` means the prediction was already top-1 after the
  first block). Only :mod:`memrecall.report.tables` shows them 1-based, as the figures label them.
* Confidence intervals are **percentile bootstrap** intervals of the group mean, with a seeded
  generator (``seed=0``) so reruns give identical numbers: no normality assumption, which matters
  for skewed probabilities and heavy-tailed ranks.
* Ranks are summarised by the **geometric mean of (rank + 1), minus 1**: the arithmetic mean of
  ranks is driven by the few examples ranked in the thousands, while the geometric mean is what a
  log axis shows honestly. 0 still means "every example ranks the token first".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

__all__ = [
    "FACT_GROUPS",
    "GROUPS",
    "MEASURES",
    "SUMMARY_COLUMNS",
    "TEST_COLUMNS",
    "bootstrap_mean_ci",
    "compare_groups",
    "confidence_boost",
    "group_medians",
    "group_order",
    "group_tests",
    "group_tests_by_model",
    "label_groups",
    "layer_summary",
    "median_by_model",
    "normalised_depth",
    "per_example_table",
    "per_example_tables",
    "promotion_layer",
    "stack",
    "summaries_by_model",
]

GROUPS = ("memorized", "non-memorized", "wikipedia")
"""The three groups of the paper's main figure, in plotting order."""

FACT_GROUPS = ("facts: memorized", "facts: non-memorized")
"""Groups for the facts extension (memorized = the model predicts the object's first token)."""

SUMMARY_COLUMNS = ["group", "layer", "mean", "lo", "hi", "n", "statistic"]
"""Columns of :func:`layer_summary`."""

MEASURES = ("promotion_layer", "promotion_depth", "confidence_boost", "final_prob")
"""The per-example measures of :func:`per_example_table`, in display order."""

TEST_COLUMNS = ["measure", "a", "b", "n_a", "n_b", "median_a", "median_b", "mean_a", "mean_b",
                "p_value", "rank_biserial", "note"]
"""Columns of :func:`group_tests`."""


# --------------------------------------------------------------------------- groups


def _memorization_groups(frame: pd.DataFrame, labels: tuple[str, str]) -> pd.DataFrame:
    if "is_memorized" not in frame.columns:
        raise ValueError("the frame needs an `is_memorized` column (project probes with targets)")
    out = frame.copy()
    memorized = out["is_memorized"].to_numpy(dtype=bool)
    out["group"] = np.where(memorized, labels[0], labels[1])
    return out


def label_groups(idiom_res: pd.DataFrame, wiki_res: pd.DataFrame | None = None,
                 facts_res: pd.DataFrame | None = None) -> pd.DataFrame:
    """Concatenate projection results with a ``group`` column.

    Args:
        idiom_res: :func:`memrecall.project` output for idioms; rows become ``"memorized"`` or
            ``"non-memorized"`` by ``is_memorized``.
        wiki_res: the same for the Wikipedia control texts; every row is ``"wikipedia"``
            whatever its ``is_memorized`` (kept as a column).
        facts_res: optional facts results: ``"facts: memorized"`` / ``"facts: non-memorized"``.

    Returns:
        One frame (fresh 0..n-1 index) with all input columns plus ``group`` and ``source``
        (``"idioms"``, ``"wikipedia"``, ``"facts"``).

    """
    parts = [_memorization_groups(idiom_res, GROUPS[:2]).assign(source="idioms")]
    if wiki_res is not None:
        parts.append(wiki_res.assign(group=GROUPS[2], source="wikipedia"))
    if facts_res is not None:
        parts.append(_memorization_groups(facts_res, FACT_GROUPS).assign(source="facts"))
    return pd.concat(parts, ignore_index=True)


def group_order(groups: Iterable[str]) -> list[str]:
    """Known groups first in :data:`GROUPS` / :data:`FACT_GROUPS` order, then others as met."""
    seen = list(dict.fromkeys(groups))
    known = [g for g in GROUPS + FACT_GROUPS if g in seen]
    return known + [g for g in seen if g not in known]


# --------------------------------------------------------------------------- per example


def stack(values: pd.Series | Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack a column of per-layer arrays: ``n`` arrays of length ``L`` -> ``(n, L)``."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return values
    rows = list(values)
    if not rows:
        raise ValueError("no rows to stack")
    return np.stack([np.asarray(r) for r in rows])


def promotion_layer(ranks: np.ndarray | pd.Series | Sequence[np.ndarray]) -> np.ndarray:
    """First layer from which the token stays at rank 0 through the last layer.

    Args:
        ranks: ``(n, n_layers)`` ranks of the final prediction (or a column of per-layer arrays).

    Returns:
        ``(n,)`` int 0-based layer indices; ``0`` means top-1 from the first block on.

    Raises:
        ValueError: a row is not at rank 0 in the last layer (true of every ``pred_rank``; for
            ``target_rank`` keep only memorized rows).

    """
    ranks = stack(ranks)
    top = ranks == 0
    if not top[:, -1].all():
        bad = np.flatnonzero(~top[:, -1])
        raise ValueError(f"rows {bad[:10].tolist()} are not at rank 0 in the last layer")
    # Index of the last layer where the rank is not 0, plus one; 0 if there is none.
    not_top_reversed = ~top[:, ::-1]
    has_miss = not_top_reversed.any(axis=1)
    last_miss = ranks.shape[1] - 1 - not_top_reversed.argmax(axis=1)
    return np.where(has_miss, last_miss + 1, 0).astype(np.int64)


def confidence_boost(probs: np.ndarray | pd.Series | Sequence[np.ndarray],
                     promotion: np.ndarray) -> np.ndarray:
    """Probability gained after promotion: last layer minus the promotion layer.

    Args:
        probs: ``(n, n_layers)`` probabilities of the final prediction.
        promotion: ``(n,)`` 0-based promotion layers (:func:`promotion_layer`).

    Returns:
        ``(n,)`` float differences (0 when promoted only at the last layer).

    """
    probs = stack(probs).astype(np.float64)
    promotion = np.asarray(promotion, dtype=np.int64)
    return probs[:, -1] - probs[np.arange(len(probs)), promotion]


def normalised_depth(n_layers: int) -> np.ndarray:
    """Relative depth of each layer, for comparing models: layer ``i`` -> ``(i + 1) / n_layers``.

    Returns:
        ``(n_layers,)`` floats in ``(0, 1]``, indexed by 0-based layer; the last layer is 1.

    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return np.arange(1, n_layers + 1) / n_layers


def per_example_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Add promotion and confidence-boost columns to projection results.

    Args:
        frame: :func:`memrecall.project` output (``pred_rank``, ``pred_prob`` columns), e.g.
            after :func:`label_groups`.

    Returns:
        A copy with ``n_layers``, ``promotion_layer`` (0-based), ``promotion_depth``
        (:func:`normalised_depth` of the promotion layer, comparable across models),
        ``final_prob`` (probability of the prediction at the last layer) and
        ``confidence_boost``.

    """
    ranks, probs = stack(frame["pred_rank"]), stack(frame["pred_prob"])
    promotion = promotion_layer(ranks)
    out = frame.copy()
    out["n_layers"] = ranks.shape[1]
    out["promotion_layer"] = promotion
    out["promotion_depth"] = normalised_depth(ranks.shape[1])[promotion]
    out["final_prob"] = probs[:, -1].astype(np.float64)
    out["confidence_boost"] = confidence_boost(probs, promotion)
    return out


def per_example_tables(labelled: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """:func:`per_example_table` of each model's labelled frame (model name -> table)."""
    return {model: per_example_table(frame) for model, frame in labelled.items()}


# --------------------------------------------------------------------------- summaries


def bootstrap_mean_ci(values: np.ndarray, ci: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means with a percentile bootstrap interval.

    Args:
        values: ``(n, L)`` samples (rows are examples).
        ci: coverage of the interval.
        n_boot: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        ``(L,)`` arrays ``mean, lo, hi``; with one row the interval is the point itself.

    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = values.mean(axis=0)
    if n == 1:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    # A resample is a vector of counts per row; (n_boot, n) @ (n, L) gives every resample's mean.
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    boots = counts @ values / n
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha], axis=0)
    return mean, lo, hi


def layer_summary(frame: pd.DataFrame, column: str, group_col: str = "group", ci: float = 0.95,
                  log: bool | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per-group, per-layer mean of a per-layer column with a bootstrap confidence interval.

    Args:
        frame: rows with a ``group_col`` and ``column`` holding arrays of length ``n_layers``.
        column: e.g. ``"pred_prob"``, ``"pred_rank"``, ``"target_rank"``.
        group_col: the grouping column.
        ci: interval coverage (percentile bootstrap, seeded, see module docstring).
        log: summarise ``log10(x + 1)`` and transform back, i.e. the geometric mean of
            ``x + 1`` minus 1 (interval likewise). Default: True for ``*_rank`` columns.
        n_boot: bootstrap resamples.
        seed: resampling seed.

    Returns:
        Long frame, ``n_groups * n_layers`` rows: ``group, layer`` (0-based), ``mean, lo, hi,
        n`` and ``statistic`` (``"mean"`` or ``"geometric mean"``). Groups in
        :func:`group_order`.

    """
    if log is None:
        log = column.endswith("rank")
    parts = []
    for group in group_order(frame[group_col]):
        values = stack(frame.loc[frame[group_col] == group, column]).astype(np.float64)
        if log:
            values = np.log10(values + 1)
        mean, lo, hi = bootstrap_mean_ci(values, ci=ci, n_boot=n_boot, seed=seed)
        if log:
            mean, lo, hi = (10**x - 1 for x in (mean, lo, hi))
        parts.append(pd.DataFrame({
            "group": group, "layer": np.arange(len(mean)), "mean": mean, "lo": lo,
            "hi": hi, "n": len(values), "statistic": "geometric mean" if log else "mean",
        }))
    if not parts:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]


def summaries_by_model(results: Mapping[str, pd.DataFrame], column: str,
                       **kwargs: Any) -> dict[str, pd.DataFrame]:
    """:func:`layer_summary` of ``column`` for each model's labelled frame (for cross-model plots).

    Args:
        results: model name -> frame with a ``group`` column (:func:`label_groups`).
        column: the per-layer column.
        **kwargs: passed to :func:`layer_summary`.

    Returns:
        model name -> long summary frame.

    """
    return {model: layer_summary(frame, column, **kwargs) for model, frame in results.items()}


def group_medians(table: pd.DataFrame, group_col: str = "group",
                  measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Per-group size, medians and means of the per-example measures (0-based layers).

    Args:
        table: :func:`per_example_table` output.
        group_col: the grouping column.
        measures: scalar columns to summarise.

    Returns:
        One row per group (index ``group``, in :func:`group_order`): ``n``,
        ``median_<measure>`` and ``mean_<measure>`` for each measure (NaN for an empty group),
        and ``last_layer_pct``, the percentage of examples promoted only at the last layer.

    """
    rows = []
    for group in group_order(table[group_col]):
        part = table[table[group_col] == group]
        row: dict[str, Any] = {"group": group, "n": len(part)}
        for measure in measures:
            values = part[measure].to_numpy(dtype=np.float64)
            row[f"median_{measure}"] = float(np.median(values)) if len(values) else np.nan
            row[f"mean_{measure}"] = float(values.mean()) if len(values) else np.nan
        last = part["n_layers"] - 1
        row["last_layer_pct"] = (100 * float((part["promotion_layer"] == last).mean())
                                 if len(part) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("group")


def median_by_model(tables: Mapping[str, pd.DataFrame], column: str = "promotion_depth",
                    group_col: str = "group") -> pd.DataFrame:
    """Median of a per-example column for each model (rows) and group (columns).

    Args:
        tables: model name -> :func:`per_example_table` output.
        column: a scalar column, e.g. ``"promotion_depth"`` (comparable across models).
        group_col: the grouping column.

    Returns:
        One row per model, one column per group (in :func:`group_order`); the columns' name is
        ``"median <column>"`` with underscores as spaces.

    """
    medians = pd.DataFrame({name: table.groupby(group_col)[column].median()
                            for name, table in tables.items()}).T
    medians = medians[group_order(medians.columns)]
    medians.columns.name = f"median {column.replace('_', ' ')}"
    return medians


# --------------------------------------------------------------------------- tests


def compare_groups(values_a: Sequence[float] | np.ndarray,
                   values_b: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Two-sided Mann–Whitney U test of two samples, with its effect size.

    The effect size is the rank-biserial correlation ``2 U_a / (n_a n_b) - 1``, equal to Cliff's
    delta ``P(a > b) - P(a < b)``: +1 when every ``a`` exceeds every ``b``, 0 for no shift.

    Args:
        values_a: ``(n_a,)`` sample (NaNs dropped).
        values_b: ``(n_b,)`` sample (NaNs dropped).

    Returns:
        ``n_a, n_b, median_a, median_b, u`` (U of sample a), ``p_value``, ``rank_biserial``.

    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"both samples need values (got {len(a)} and {len(b)})")
    result = scipy_stats.mannwhitneyu(a, b, alternative="two-sided")
    u = float(result.statistic)
    return {
        "n_a": len(a), "n_b": len(b),
        "median_a": float(np.median(a)), "median_b": float(np.median(b)),
        "u": u, "p_value": float(result.pvalue),
        "rank_biserial": 2 * u / (len(a) * len(b)) - 1,
    }


def group_tests(table: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                measures: Sequence[str] = ("promotion_layer", "confidence_boost"),
                group_col: str = "group", min_n: int = 2) -> pd.DataFrame:
    """Two-sided Mann–Whitney tests (:func:`compare_groups`) of measures between pairs of groups.

    Pairs where either group has fewer than ``min_n`` examples are kept with NaN statistics and a
    ``note`` saying why (so a smoke run with no memorized idiom prints a note, not a traceback).

    Args:
        table: :func:`per_example_table` output with a ``group_col``.
        pairs: ``(a, b)`` group pairs; the effect size is positive when ``a`` tends to be larger.
        measures: scalar columns to compare.
        group_col: the grouping column.
        min_n: smallest group size tested.

    Returns:
        One row per measure and pair, columns :data:`TEST_COLUMNS`: ``measure, a, b, n_a, n_b,
        median_a, median_b, mean_a, mean_b`` (0-based for ``promotion_layer``; NaN for an empty
        group), ``p_value, rank_biserial`` (Cliff's delta, ``P(a > b) - P(a < b)``) and
        ``note`` ("" when tested).

    """
    rows = []
    for measure in measures:
        for a, b in pairs:
            values_a = table.loc[table[group_col] == a, measure].to_numpy(dtype=np.float64)
            values_b = table.loc[table[group_col] == b, measure].to_numpy(dtype=np.float64)
            row: dict[str, Any] = {"measure": measure, "a": a, "b": b, "n_a": len(values_a),
                                   "n_b": len(values_b)}
            for suffix, values in (("a", values_a), ("b", values_b)):
                row[f"median_{suffix}"] = float(np.median(values)) if len(values) else np.nan
                row[f"mean_{suffix}"] = float(np.mean(values)) if len(values) else np.nan
            small = [f"{g!r} has {len(v)}" for g, v in ((a, values_a), (b, values_b))
                     if len(v) < min_n]
            if small:
                row.update(p_value=np.nan, rank_biserial=np.nan,
                           note=f"not tested: {' and '.join(small)} example(s), need {min_n}")
            else:
                result = compare_groups(values_a, values_b)
                row.update(p_value=result["p_value"], rank_biserial=result["rank_biserial"],
                           note="")
            rows.append(row)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def group_tests_by_model(tables: Mapping[str, pd.DataFrame], pairs: Sequence[tuple[str, str]],
                         **kwargs: Any) -> pd.DataFrame:
    """:func:`group_tests` of every model, stacked, with a leading ``model`` column."""
    frames = [group_tests(table, pairs, **kwargs).assign(model=name)
              for name, table in tables.items()]
    tests = pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame(columns=[*TEST_COLUMNS, "model"])
    return tests[["model", *TEST_COLUMNS]]
