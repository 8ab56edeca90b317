"""What people read: tables, verdicts and the summary row, from the numbers of `stats`.

This is the one place where layers become **1-based**, as the figures' axes label them: entry
``i`` of a per-layer array (0-based, the output of block ``i``) is shown as layer ``i + 1``
(:func:`to_display_layer`). Everything here reads 0-based numbers from :mod:`memrecall.analysis`
and returns frames or sentences meant for a notebook or ``results/<profile>/summary.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from .._io import atomic_write
from ..analysis import projection
from ..analysis.memorization import memorized_rates
from .provenance import recorded

__all__ = [
    "LAYER_MEASURES",
    "MEASURE_LABELS",
    "TWO_STEP_IDIOMS",
    "conclusions",
    "medians_table",
    "readable_tests",
    "split_layer",
    "style_tests",
    "summary_for_reading",
    "summary_row",
    "summary_table",
    "to_display_layer",
    "two_step_verdict",
    "verdict",
    "write_csv",
]

Layer = TypeVar("Layer", int, float, np.ndarray, pd.Series, pd.Index)

MEASURE_LABELS = {
    "promotion_layer": "promotion layer (1-based)",
    "promotion_depth": "promotion depth (layer / n_layers)",
    "confidence_boost": "confidence boost (probability)",
    "final_prob": "final probability",
}
"""How each per-example measure is named in tables."""

LAYER_MEASURES = ("promotion_layer",)
"""Measures that are layer indices (shown 1-based)."""

TWO_STEP_IDIOMS = (("memorized", "non-memorized"),)
"""The pair whose two-step picture notebook 03 reports."""


def to_display_layer(layer: Layer) -> Layer:
    """A 0-based layer index (or array of them) as people read it: layer ``i`` -> ``i + 1``.

    Works on ints, floats (medians), NumPy arrays and pandas objects; NaN stays NaN.
    """
    return layer + 1


# --------------------------------------------------------------------------- tables


def medians_table(table: pd.DataFrame, group_col: str = "group") -> pd.DataFrame:
    """Per-group size and medians of the per-example measures, promotion layer 1-based.

    Args:
        table: :func:`memrecall.analysis.per_example_table` output.
        group_col: the grouping column.

    Returns:
        One row per group (in :func:`memrecall.analysis.group_order`): ``n``, the median of each
        measure in :data:`MEASURE_LABELS` (columns named by those labels), the mean confidence
        boost (its median is often 0: promoted at the last layer means no boost) and the
        percentage of examples promoted only at the last layer.

    """
    numbers = projection.group_medians(table, group_col=group_col, measures=tuple(MEASURE_LABELS))
    out = pd.DataFrame({"n": numbers["n"]})
    for measure, label in MEASURE_LABELS.items():
        median = numbers[f"median_{measure}"]
        out[f"median {label}"] = to_display_layer(median) if measure in LAYER_MEASURES else median
    out["mean confidence boost (probability)"] = numbers["mean_confidence_boost"]
    out["promoted only at the last layer (%)"] = numbers["last_layer_pct"]
    return out


def readable_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """:func:`memrecall.analysis.group_tests` rows, promotion-layer medians and means 1-based."""
    out = tests.copy()
    layers = out["measure"].isin(LAYER_MEASURES)
    for column in ("median_a", "median_b", "mean_a", "mean_b"):
        out[column] = out[column].astype(np.float64)
        out.loc[layers, column] = to_display_layer(out.loc[layers, column])
    return out


def style_tests(tests: pd.DataFrame) -> Any:
    """:func:`readable_tests` as a pandas ``Styler``: p-values and effects formatted, no index."""
    formats = {"p_value": "{:.2g}", "rank_biserial": "{:+.2f}", "median_a": "{:.3g}",
               "median_b": "{:.3g}", "mean_a": "{:.3g}", "mean_b": "{:.3g}"}
    return readable_tests(tests).style.format(formats, na_rep="–").hide(axis="index")


# --------------------------------------------------------------------------- verdicts


def verdict(test: pd.Series | Mapping[str, Any], n_layers: int | None = None,
            alpha: float = 0.05) -> str:
    """One sentence on one row of :func:`memrecall.analysis.group_tests` (0-based numbers).

    Args:
        test: a row of :func:`memrecall.analysis.group_tests`.
        n_layers: the model's depth, to write "layer 9 of 18" (optional).
        alpha: significance level of the two-sided test.

    Returns:
        E.g. ``"promotion layer: memorized earlier than non-memorized (median 9 vs 14 of 18;
        p = 3.1e-05, Cliff's delta = -0.41)"``, layers 1-based.

    """
    measure, a, b = test["measure"], test["a"], test["b"]
    label = MEASURE_LABELS.get(measure, measure).split(" (")[0]
    if test["note"]:
        return f"{label}: {a} vs {b}: {test['note']}"

    def shown(key: str) -> float:
        value = float(test[key])
        return to_display_layer(value) if measure in LAYER_MEASURES else value

    of = f" of {n_layers}" if n_layers and measure == "promotion_layer" else ""
    medians = f"median {shown('median_a'):.3g} vs {shown('median_b'):.3g}{of}"
    if measure not in ("promotion_layer", "promotion_depth") and "mean_a" in test:
        medians += f", mean {shown('mean_a'):.3g} vs {shown('mean_b'):.3g}"
    numbers = f"p = {test['p_value']:.2g}, Cliff's delta = {test['rank_biserial']:+.2f}"
    if not test["p_value"] < alpha:
        return f"{label}: {a} vs {b}: no significant difference ({medians}; {numbers})"
    higher = test["rank_biserial"] > 0
    if measure in ("promotion_layer", "promotion_depth"):
        word = "later" if higher else "earlier"
    else:
        word = "larger" if higher else "smaller"
    return f"{label}: {a} {word} than {b} ({medians}; {numbers})"


def two_step_verdict(tests: pd.DataFrame, a: str = "memorized", b: str = "non-memorized",
                     alpha: float = 0.05) -> str:
    """Whether one model's tests support the paper's two-step picture for ``a`` against ``b``.

    The picture needs both steps: ``a`` promoted significantly earlier (negative effect on
    ``promotion_layer``) and boosted significantly more (positive effect on
    ``confidence_boost``).

    Args:
        tests: :func:`memrecall.analysis.group_tests` rows of one model (other pairs are ignored).
        a: the group expected to be recalled from memory.
        b: the group it is compared with.
        alpha: significance level.

    Returns:
        ``"supported"``, ``"partly supported: ..."``, ``"not supported"`` or ``"not tested: ..."``.

    """
    rows = tests[(tests["a"] == a) & (tests["b"] == b)].set_index("measure")
    if not {"promotion_layer", "confidence_boost"} <= set(rows.index):
        return "not tested: promotion layer and confidence boost tests are both needed"
    notes = [note for note in rows["note"] if note]
    if notes:
        return notes[0]
    layer, boost = rows.loc["promotion_layer"], rows.loc["confidence_boost"]
    earlier = bool(layer["p_value"] < alpha and layer["rank_biserial"] < 0)
    boosted = bool(boost["p_value"] < alpha and boost["rank_biserial"] > 0)
    if earlier and boosted:
        return "supported"
    if earlier or boosted:
        which = "promoted earlier" if earlier else "boosted more"
        other = "not boosted more" if earlier else "not promoted earlier"
        return f"partly supported: {which}, but {other}"
    return "not supported"


def conclusions(tables: Mapping[str, pd.DataFrame], tests: pd.DataFrame,
                two_step: Sequence[tuple[str, str]] = TWO_STEP_IDIOMS,
                sources: Sequence[str] = ("idioms", "facts"), alpha: float = 0.05) -> str:
    """The closing text of notebooks 03 and 04, computed from their results.

    For each model: how much of each source it memorizes, the median promotion layer of each
    group (1-based), one :func:`verdict` per test, and the :func:`two_step_verdict` of each pair
    in ``two_step`` (a pair absent from ``tests`` is tested here).

    Args:
        tables: model name -> :func:`memrecall.analysis.per_example_table` output (with ``source``,
            as after :func:`memrecall.analysis.label_groups`).
        tests: :func:`memrecall.analysis.group_tests_by_model` output.
        two_step: ``(a, b)`` pairs whose two-step picture to state.
        sources: sources whose memorized share to state.
        alpha: significance level.

    Returns:
        Lines of text, one block per model.

    """
    rates = memorized_rates(tables, sources)
    lines = []
    for name, table in tables.items():
        n_layers = int(table["n_layers"].iloc[0])
        shares = rates[rates["model"] == name]
        memorized = ", ".join(f"{pct:.1f}% of {source}" for source, pct
                              in zip(shares["source"], shares["memorized (%)"], strict=True))
        lines.append(f"{name} ({n_layers} layers): memorized {memorized}")
        medians = to_display_layer(projection.group_medians(
            table, measures=("promotion_layer",))["median_promotion_layer"])
        lines.append("    median promotion layer: "
                     + ", ".join(f"{group} {value:.3g}" for group, value in medians.items()))
        model_tests = tests[tests["model"] == name]
        for _, test in model_tests.iterrows():
            lines.append(f"    {verdict(test, n_layers=n_layers, alpha=alpha)}")
        for a, b in two_step:
            pair = model_tests[(model_tests["a"] == a) & (model_tests["b"] == b)]
            if pair.empty:
                pair = projection.group_tests(table, [(a, b)])
            lines.append(f"    two-step picture ({a} promoted earlier AND boosted more than "
                         f"{b}): {two_step_verdict(pair, a, b, alpha=alpha)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CSV files


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) as CSV, atomically: the file is whole or absent.

    A carriage return inside a text cell (a model's predicted piece can be one) would read back
    as a line break, adding rows; when there is one, every text cell is quoted, so
    ``pandas.read_csv(path)`` gives the same rows back. Otherwise the format is pandas' default.
    The code that wrote it is recorded in the folder's ``provenance.json``
    (:func:`memrecall.report.recorded`).

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    texts = frame.select_dtypes(include=["object", "string"])
    carriage_return = any(isinstance(cell, str) and "\r" in cell
                          for column in texts.columns for cell in texts[column])
    quoting = csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL
    with recorded(path):
        atomic_write(path, lambda temp: frame.to_csv(temp, index=False, quoting=quoting))
    return path


# --------------------------------------------------------------------------- summary.csv


def _key(group: str) -> str:
    return group.replace("facts: ", "facts_").replace("-", "_").replace(" ", "_")


def summary_row(model: str, idiom_res: pd.DataFrame,
                wiki_res: pd.DataFrame | None = None) -> dict[str, Any]:
    """One row of ``results/<profile>/summary.csv`` for a model.

    Args:
        model: the model's name.
        idiom_res: :func:`memrecall.project` output for the idioms (or
            ``pipeline.idiom_results``).
        wiki_res: the same for Wikipedia control texts (optional).

    Returns:
        A flat dict: ``model, n_layers, n_idioms, n_memorized, memorized_pct`` (rounded to 0.1),
        then for each group of :data:`memrecall.analysis.GROUPS` (``memorized``,
        ``non_memorized``, ``wikipedia``): ``n_<g>``, ``median_promotion_layer_1based_<g>``
        and ``median_promotion_depth_<g>`` (fraction of the depth, comparable across models,
        rounded to 0.001), then ``mean_confidence_boost_<g>`` for each group (rounded to
        0.0001; its median is usually 0, see :func:`medians_table`). NaN for an empty group.

    """
    table = projection.per_example_table(projection.label_groups(idiom_res, wiki_res))
    n_idioms = len(idiom_res)
    n_memorized = int(idiom_res["is_memorized"].sum())
    row: dict[str, Any] = {
        "model": model, "n_layers": int(table["n_layers"].iloc[0]), "n_idioms": n_idioms,
        "n_memorized": n_memorized,
        "memorized_pct": round(100 * n_memorized / n_idioms, 1) if n_idioms else float("nan"),
    }
    boosts = {}
    for group in projection.GROUPS:
        rows = table[table["group"] == group]
        key = _key(group)
        row[f"n_{key}"] = len(rows)
        layer = float(rows["promotion_layer"].median()) if len(rows) else float("nan")
        depth = float(rows["promotion_depth"].median()) if len(rows) else float("nan")
        row[f"median_promotion_layer_1based_{key}"] = to_display_layer(layer)
        row[f"median_promotion_depth_{key}"] = round(depth, 3)
        boosts[f"mean_confidence_boost_{key}"] = (
            round(float(rows["confidence_boost"].mean()), 4) if len(rows) else float("nan"))
    return {**row, **boosts}


def summary_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`summary_row` dicts as the frame written to ``summary.csv`` (one row per model)."""
    return pd.DataFrame(list(rows))


_SUMMARY_FORMATS = (  # column prefix -> how its numbers read (the rounding of summary_row)
    ("n_", "{:,.0f}"), ("memorized_pct", "{:.1f}"), ("median_promotion_layer", "{:g}"),
    ("median_promotion_depth", "{:.3f}"), ("mean_confidence_boost", "{:.4f}"),
)


def summary_for_reading(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary_table` to read: one column per model, each number at its own precision.

    Counts read as integers (``852``, not ``852.000`` or ``8.000e+00``), percentages with one
    decimal, median layers as they are (``16`` or ``16.5``), depths with three decimals and
    boosts with four; an empty group reads ``–``.

    Returns:
        A frame of strings: index = the summary's columns (but ``model``), columns = models.
    """
    def formatted(column: str, value: Any) -> str:
        if pd.isna(value):
            return "–"
        fmt = next((f for prefix, f in _SUMMARY_FORMATS if column.startswith(prefix)), "{:g}")
        return fmt.format(value)

    table = summary.set_index("model")
    return pd.DataFrame({model: [formatted(column, row[column]) for column in table.columns]
                         for model, row in table.iterrows()},
                        index=pd.Index(table.columns, name="model"))


# --------------------------------------------------------------------------- figures' split line


def split_layer(table: pd.DataFrame, group: str = "memorized",
                group_col: str = "group") -> float | None:
    """Where to draw the "Candidate Promotion | Confidence Boosting" line, or None.

    The group's median promotion layer, 1-based, when the group has examples and the line falls
    before the last layer; None when the group is empty or its median promotion is the last
    layer (no boosting phase to mark).

    Args:
        table: :func:`memrecall.analysis.per_example_table` output.
        group: the group whose promotion marks the split.
        group_col: the grouping column.

    Returns:
        A 1-based layer for the plots' ``split_layer``, or None.

    """
    rows = table[table[group_col] == group]
    if rows.empty:
        return None
    layer = to_display_layer(float(rows["promotion_layer"].median()))
    return layer if layer < int(rows["n_layers"].max()) else None
