"""The paper's numbers next to ours, one row per quantity and model, with a computed verdict.

Every row has the columns of ``results/<profile>/paper_comparison.csv``
(:data:`COMPARISON_COLUMNS`). ``paper_model`` is the paper's model we compare with: the model
itself when it is one of the paper's four, else GPT-2 medium for a causal LM (the paper's main
model) and BERT base for a masked LM. A verdict starts with ``agrees`` or ``differs`` and says
how; where the paper's four models span a range, the verdict also says whether ours falls in it.
Each notebook builds the rows of its analyses and merges them into the one file
(:func:`merge_comparison`): an analysis's rows are replaced as a whole, other analyses' kept.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import CacheWarning, atomic_write_text
from ..analysis.landmarks import curve_landmarks
from ..data import paper
from .provenance import recorded

__all__ = [
    "ANALYSES",
    "COMPARISON_COLUMNS",
    "comparison_frame",
    "figure2_rows",
    "figure4_rows",
    "figure5_rows",
    "merge_comparison",
    "number_verdict",
    "paper_counterpart",
    "table3_rows",
    "table4_rows",
    "table5_rows",
    "table5_side_by_side",
    "verdict_counts",
]

COMPARISON_COLUMNS = ["analysis", "quantity", "model", "ours", "paper_model", "paper_value",
                      "verdict"]
ANALYSES = ("table3", "table4", "table5", "figure2", "figure3", "figure4", "figure5")

# Tolerances within which ours "agrees": percentage points, relative depth, probability.
PCT_TOL = 5.0
DEPTH_TOL = 0.1
PROB_TOL = 0.1
WEAK_R = 0.3


def paper_counterpart(model: str, is_masked: bool) -> str:
    """The paper's model to compare ``model`` with (itself if it is one of the paper's four)."""
    if model in paper.PAPER_MODELS:
        return model
    return "bert-base-uncased" if is_masked else "gpt2-medium"


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def number_verdict(ours: float, paper_value: float, tol: float, *, digits: int = 2,
                   span: Iterable[float] | None = None) -> str:
    """``agrees``/``differs`` by an absolute tolerance, with the difference and the paper's span.

    Args:
        ours: our value.
        paper_value: the paper's value for the counterpart model.
        tol: largest absolute difference that still agrees.
        digits: decimals in the text.
        span: the paper's values over its models; the verdict says whether ours lies within
            their range (no tolerance).
    """
    if ours is None or np.isnan(ours):
        return "differs: not measured here"
    diff = ours - paper_value
    if abs(diff) <= tol:
        text = f"agrees (within {_fmt(tol, digits)})"
    else:
        text = f"differs: {'higher' if diff > 0 else 'lower'} by {_fmt(abs(diff), digits)}"
    if span is not None:
        values = [v for v in span if not np.isnan(v)]
        lo, hi = min(values), max(values)
        inside = "inside" if lo <= ours <= hi else "outside"
        text += f"; {inside} the paper's range {_fmt(lo, digits)}-{_fmt(hi, digits)}"
    return text


def _row(analysis: str, quantity: str, model: str, ours: float, paper_model: str,
         paper_value: float, verdict: str) -> dict:
    return {"analysis": analysis, "quantity": quantity, "model": model,
            "ours": float(ours) if ours is not None else np.nan, "paper_model": paper_model,
            "paper_value": float(paper_value), "verdict": verdict}


def comparison_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows as a frame with exactly :data:`COMPARISON_COLUMNS`."""
    return pd.DataFrame(list(rows), columns=COMPARISON_COLUMNS)


def table3_rows(counts: pd.DataFrame, paper_model: str) -> pd.DataFrame:
    """Table 3: % memorized, on all idioms and on ``hard_to_guess``, vs the paper's of 814.

    Args:
        counts: :func:`memrecall.analysis.memorized_counts` of one model.
        paper_model: :func:`paper_counterpart` of that model.
    """
    table = paper.table3().set_index("model")["memorized_pct"]
    rows = [
        _row("table3", f"memorized % ({part.subset}, n={part.n})", part.model,
             part.memorized_pct, paper_model, table[paper_model],
             number_verdict(part.memorized_pct, table[paper_model], PCT_TOL, digits=1,
                            span=table.to_numpy()))
        for part in counts.itertuples()
    ]
    return comparison_frame(rows)


def _r_verdict(ours: float, p_value: float, paper_r: float) -> str:
    if np.isnan(ours):
        return "differs: not measured here (too few rows)"
    strength = "weak" if abs(ours) < WEAK_R else "not weak"
    sign = ("the same sign as" if np.sign(ours) == np.sign(paper_r) else "the opposite sign of")
    significant = "p < 0.05" if p_value < 0.05 else "not significant"
    head = "agrees" if abs(ours) < WEAK_R else "differs"
    return (f"{head}: {strength} (|r| {'<' if abs(ours) < WEAK_R else '>='} {WEAK_R}), "
            f"{sign} the paper's, {significant}; the paper: weak in all four models")


def table4_rows(freq: pd.DataFrame, paper_model: str) -> pd.DataFrame:
    """Table 4: Pearson r of first-layer rank vs word frequency (memorized, all idioms).

    Args:
        freq: :func:`memrecall.analysis.frequency_table` of one model.
        paper_model: :func:`paper_counterpart` of that model.
    """
    paper_r = paper.table4().set_index("model")["r"][paper_model]
    rows = [_row("table4", f"Pearson r, first-layer rank vs frequency ({part.subset} idioms)",
                 part.model, part.r, paper_model, paper_r, _r_verdict(part.r, part.p, paper_r))
            for part in freq.itertuples()]
    return comparison_frame(rows)


def table5_rows(classifier: pd.DataFrame, paper_model: str) -> pd.DataFrame:
    """Table 5: classifier accuracy (%) per feature set, ours vs the paper's.

    Args:
        classifier: :func:`memrecall.analysis.classifier_table` of one model.
        paper_model: :func:`paper_counterpart` of that model.
    """
    table = paper.table5()
    rows = []
    for part in classifier.itertuples():
        theirs = table[table["features"] == part.features].set_index("model")["accuracy_mean"]
        rows.append(_row("table5", f"accuracy % ({part.features})", part.model,
                         part.accuracy_mean, paper_model, theirs[paper_model],
                         number_verdict(part.accuracy_mean, theirs[paper_model], PCT_TOL,
                                        digits=1, span=theirs.to_numpy())))
    return comparison_frame(rows)


def table5_side_by_side(ours: pd.DataFrame) -> pd.DataFrame:
    """Table 5 as the paper prints it, "mean ± sd" per feature set, the paper's models first.

    Args:
        ours: :func:`memrecall.analysis.classifier_table` rows of our models.

    Returns:
        One row per feature set (the paper's order), one column per model; the paper's columns
        are marked ``(paper)``.
    """
    theirs = paper.table5().assign(model=lambda t: t["model"] + " (paper)")
    both = pd.concat([theirs, ours], ignore_index=True)
    both["accuracy"] = [f"{m:.1f} ± {s:.1f}" if not np.isnan(m) else "n/a"
                        for m, s in zip(both["accuracy_mean"], both["accuracy_sd"])]
    table = both.pivot(index="features", columns="model", values="accuracy")
    return table.reindex(index=list(paper.TABLE5_FEATURES),
                         columns=list(dict.fromkeys(both["model"]))).fillna("")


def verdict_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """How many of each analysis's rows agree with the paper, per model ("k of n agree")."""
    agree = rows.assign(agrees=rows["verdict"].str.startswith("agrees"))
    counts = agree.groupby(["analysis", "model"], sort=False)["agrees"].agg(["sum", "size"])
    text = counts["sum"].astype(str) + " of " + counts["size"].astype(str) + " agree"
    return text.unstack("model").reindex([a for a in ANALYSES if a in set(rows["analysis"])])


def _paper_landmarks(curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {m: curve_landmarks(part).set_index("group") for m, part in curves.groupby("model")}


def _ratio_verdict(ours: float, theirs: float, what: str) -> str:
    if np.isnan(ours):
        return "differs: not measured here"
    same = (ours > 1) == (theirs > 1)
    return (f"{'agrees' if same else 'differs'}: {what} "
            f"{'higher' if ours > 1 else 'lower'} here, {'higher' if theirs > 1 else 'lower'} "
            "in the paper")


def _landmark_rows(analysis: str, model: str, ours: pd.DataFrame, paper_model: str,
                   paper_curves: pd.DataFrame, groups: Iterable[str]) -> list[dict]:
    """Rows per group: depth where the mean rank drops below 1, final and peak probability."""
    theirs = _paper_landmarks(paper_curves)
    mine = curve_landmarks(ours).set_index("group")
    rows = []
    for group in groups:
        if group not in mine.index:
            continue
        for column, label, tol in (("depth_below_1", "relative depth where mean rank < 1",
                                    DEPTH_TOL),
                                   ("final_prob", "final mean probability", PROB_TOL),
                                   ("peak_prob", "peak mean probability", PROB_TOL)):
            value, reference = mine.loc[group, column], theirs[paper_model].loc[group, column]
            span = [t.loc[group, column] for t in theirs.values()]
            rows.append(_row(analysis, f"{label} ({group})", model, value, paper_model,
                             reference, number_verdict(value, reference, tol, span=span)))
    return rows


def figure2_rows(model: str, ours: pd.DataFrame, paper_model: str) -> pd.DataFrame:
    """Figure 2: landmarks of the arithmetic mean curves per group, and the first-layer ordering.

    Args:
        model: our model's name.
        ours: :func:`memrecall.analysis.mean_curves` of its labelled idiom + Wikipedia results.
        paper_model: :func:`paper_counterpart` of that model.
    """
    curves = paper.figure2()
    rows = _landmark_rows("figure2", model, ours, paper_model, curves,
                          ("memorized", "non-memorized", "wikipedia"))
    mine = curve_landmarks(ours).set_index("group")["first_rank"]
    theirs = curve_landmarks(curves[curves["model"] == paper_model]).set_index("group")
    if {"memorized", "non-memorized"} <= set(mine.index):
        ratio = mine["memorized"] / mine["non-memorized"]
        reference = theirs.loc["memorized", "first_rank"] / theirs.loc["non-memorized",
                                                                        "first_rank"]
        rows.append(_row("figure2", "first-layer mean rank, memorized / non-memorized", model,
                         ratio, paper_model, reference,
                         _ratio_verdict(ratio, reference, "memorized predictions start")))
    return comparison_frame(rows)


def figure4_rows(model: str, ours: pd.DataFrame, paper_model: str = "gpt2-medium") -> pd.DataFrame:
    """Figure 4 (facts): landmarks of the memorized and non-memorized facts' mean curves.

    Args:
        model: our model's name.
        ours: :func:`memrecall.analysis.mean_curves` of its labelled facts results.
        paper_model: the paper reports facts for GPT-2 medium only.
    """
    rows = _landmark_rows("figure4", model, ours, paper_model, paper.facts_curves(),
                          ("facts: memorized", "facts: non-memorized"))
    return comparison_frame(rows)


def figure5_rows(model: str, summary: pd.DataFrame,
                 paper_model: str = "gpt2-medium") -> pd.DataFrame:
    """Figure 5: how many k-means clusters of the memorized idioms end above 0.5, show a boost.

    Args:
        model: our model's name.
        summary: :func:`memrecall.analysis.cluster_summary` of its memorized idioms.
        paper_model: the paper clusters GPT-2 medium only.
    """
    k = len(summary)
    reference = paper.clusters()
    final = reference.groupby("cluster")["prob"].last()
    theirs_above = int((final > 0.5).sum())
    rows = []
    for column, label, paper_value in (
        ("ends_above_half", "clusters ending above probability 0.5", theirs_above),
        ("shows_boost", "clusters with a positive mean confidence boost", len(final)),
    ):
        if k == 0:
            ours, verdict = np.nan, "differs: no clusters here (fewer than 2 memorized idioms)"
        else:
            ours = int(summary[column].sum())
            same = ours == k and paper_value == len(final)
            verdict = (f"{'agrees' if same else 'differs'}: {ours} of our {k} clusters, "
                       f"{paper_value} of the paper's {len(final)}")
        rows.append(_row("figure5", f"{label} (of {k})", model, ours, paper_model,
                         paper_value, verdict))
    return comparison_frame(rows)


_CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7}|\|{7})( |$)", re.MULTILINE)


def _unusable_comparison(path: Path) -> str | None:
    """Why the comparison file at ``path`` cannot be merged into, or None when it can.

    Unusable: not UTF-8, git conflict markers, not CSV, or columns other than exactly
    :data:`COMPARISON_COLUMNS` in that order.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        return f"it is not UTF-8 text (byte {error.start})"
    if _CONFLICT_MARKER.search(text):
        return "it holds git conflict markers"
    try:
        columns = list(pd.read_csv(io.StringIO(text)).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        return f"it is not a CSV table ({str(error).strip()[:120]})"
    if columns != COMPARISON_COLUMNS:
        return f"its columns are {columns}, not {COMPARISON_COLUMNS}"
    return None


def merge_comparison(path: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Write ``rows`` into ``paper_comparison.csv``, replacing the rows of their analyses.

    Rows of other analyses already in the file stay (each notebook owns its analyses), so the
    notebooks can run in any order. Rows end sorted by :data:`ANALYSES`, then as given.

    An existing file that cannot be merged into (not UTF-8, git conflict markers, not CSV, or
    not exactly :data:`COMPARISON_COLUMNS`) is never merged silently: it is moved to
    ``<name>.bak`` and replaced by ``rows`` alone, with a :class:`CacheWarning` naming it.

    The read, merge and write hold the folder's lock, so two notebooks merging at once keep
    both's rows; the code is recorded in ``provenance.json`` (:func:`memrecall.report.recorded`).

    Returns:
        The whole merged table.
    """
    rows = rows[COMPARISON_COLUMNS]
    unknown = set(rows["analysis"]) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; expected {ANALYSES}")
    with recorded(path) as path:
        return _merge_into(path, rows)


def _merge_into(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`merge_comparison`'s read, merge and write (the caller holds the lock)."""
    old = comparison_frame([])
    if path.is_file():
        problem = _unusable_comparison(path)
        if problem is None:
            old = pd.read_csv(path)
        else:
            backup = path.with_name(path.name + ".bak")
            os.replace(path, backup)
            warnings.warn(f"{path}: not merged into, {problem}; kept as {backup} and replaced "
                          f"by this run's rows ({', '.join(sorted(set(rows['analysis'])))})",
                          CacheWarning, stacklevel=2)
    kept = old[~old["analysis"].isin(set(rows["analysis"]))]
    merged = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows.copy()
    order = merged["analysis"].map({a: i for i, a in enumerate(ANALYSES)})
    merged = merged.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)
    atomic_write_text(path, merged.to_csv(index=False))
    return merged
