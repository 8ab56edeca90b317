"""The paper's numbers next to ours, one row per quantity and model, with a computed verdict.

Every row has the columns of ``results/<profile>/paper_comparison.csv``
(:data:`COMPARISON_COLUMNS`). ``paper_model`` is the paper's model we compare with: the model
itself when it is one of the paper's four, else GPT-2 medium for a causal LM (the paper's main
model) and BERT base for a masked LM. A verdict starts with ``agrees`` or ``differs`` and says
how; where the paper's four models span a range, the verdict also says whether ours falls in it.
A value that cannot tell the groups apart (a landmark every group reaches only at the last layer,
where the final prediction has rank 0 by definition) is ``uninformative``, never ``agrees``.
``population`` says which idioms a row is about (``filtered``: the paper's, ``all``; facts and
knockout probes say theirs); ``ci_low``/``ci_high`` hold our 95% interval where we have one.
Each notebook builds the rows of its analyses and merges them into the one file
(:func:`memrecall.report.merge_comparison`): an analysis's rows are replaced as a whole, other
analyses' kept.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..analysis.clusters import cluster_gains, gaining_share
from ..analysis.landmarks import curve_landmarks
from ..data import paper

__all__ = [
    "ANALYSES",
    "COMPARISON_COLUMNS",
    "comparison_frame",
    "comparison_row",
    "figure2_rows",
    "figure4_rows",
    "figure5_rows",
    "number_verdict",
    "r_verdict",
    "paper_counterpart",
    "table3_rows",
    "table4_rows",
    "table5_rows",
    "table5_layers_row",
    "table5_side_by_side",
    "verdict_counts",
]

COMPARISON_COLUMNS = ["analysis", "quantity", "model", "population", "ours", "ci_low", "ci_high",
                      "paper_model", "paper_value", "verdict"]
ANALYSES = ("table3", "table4", "table5", "figure2", "figure3", "figure4", "figure5", "figure9")

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
                   span: Iterable[float] | None = None,
                   interval: tuple[float, float] | None = None) -> str:
    """``agrees``/``differs`` by an absolute tolerance, with the difference and the paper's span.

    Args:
        ours: our value.
        paper_value: the paper's value for the counterpart model.
        tol: largest absolute difference that still agrees.
        digits: decimals in the text.
        span: the paper's values over its models; the verdict says whether ours lies within
            their range (no tolerance).
        interval: our 95% interval: the paper's value inside it also agrees (said so).
    """
    if ours is None or np.isnan(ours):
        return "differs: not measured here"
    diff = ours - paper_value
    inside = interval is not None and interval[0] <= paper_value <= interval[1]
    if abs(diff) <= tol:
        text = f"agrees (within {_fmt(tol, digits)})"
    elif inside:
        text = "agrees (the paper's value is inside our 95% interval)"
    else:
        text = f"differs: {'higher' if diff > 0 else 'lower'} by {_fmt(abs(diff), digits)}"
    if span is not None:
        values = [v for v in span if not np.isnan(v)]
        lo, hi = min(values), max(values)
        inside = "inside" if lo <= ours <= hi else "outside"
        text += f"; {inside} the paper's range {_fmt(lo, digits)}-{_fmt(hi, digits)}"
    return text


def comparison_row(analysis: str, quantity: str, model: str, ours: float, paper_model: str,
                   paper_value: float, verdict: str, population: str = "filtered",
                   ci: tuple[float, float] | None = None) -> dict:
    """One row of :data:`COMPARISON_COLUMNS` (``ci``: our 95% interval, NaN when None)."""
    lo, hi = ci if ci is not None else (np.nan, np.nan)
    return {"analysis": analysis, "quantity": quantity, "model": model,
            "population": population, "ours": float(ours) if ours is not None else np.nan,
            "ci_low": float(lo), "ci_high": float(hi), "paper_model": paper_model,
            "paper_value": float(paper_value), "verdict": verdict}


_row = comparison_row


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
                            span=table.to_numpy()),
             population="filtered" if part.subset == "hard_to_guess" else "all")
        for part in counts.itertuples()
    ]
    return comparison_frame(rows)


def r_verdict(ours: float, ci: tuple[float, float], p_value: float, paper_r: float) -> str:
    """Table 4's verdict: ``agrees`` only for a weak r of the paper's sign that is significant.

    The paper reads its r (significant, |r| < 0.3, negative for three of its four models) as
    "weak". Ours agrees when it has the paper's sign, |r| < 0.3 and p < 0.05 (the paper's
    p-values are far below that); otherwise it differs, saying why: the opposite sign with an
    interval that excludes 0, a strong correlation, or no significant one.
    """
    if ours is None or np.isnan(ours):
        return "differs: not measured here (too few rows)"
    where = f"r = {ours:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}], p = {p_value:.2g}"
    same_sign = np.sign(ours) == np.sign(paper_r)
    if abs(ours) >= WEAK_R:
        return f"differs: not weak (|r| >= {WEAK_R}), {where}; the paper's r = {paper_r:+.2f}"
    if p_value >= 0.05:
        return f"differs: not significant, {where}; the paper's r = {paper_r:+.2f} is"
    if not same_sign:
        return f"differs: the opposite sign of the paper's ({paper_r:+.2f}), {where}"
    return f"agrees: weak, the paper's sign, significant; {where}; the paper's r = {paper_r:+.2f}"


def table4_rows(model: str, stat: dict, paper_model: str, population: str = "filtered",
                rows_label: str = "idioms + Wikipedia prompts") -> pd.DataFrame:
    """Table 4: Pearson r of first-layer rank vs word frequency, ours vs the paper's.

    Args:
        model: our model.
        stat: the ``frequency`` claim's row (:func:`memrecall.analysis.frequency_claim`).
        paper_model: :func:`paper_counterpart` of that model.
        population: the idioms' population.
        rows_label: which predictions were correlated (the paper's n implies idioms and
            Wikipedia prompts).
    """
    paper_r = paper.table4().set_index("model")["r"][paper_model]
    ci = (stat["ci_low"], stat["ci_high"])
    row = _row("table4", f"Pearson r, first-layer rank vs frequency ({rows_label}, "
               f"n={stat['n']})", model, stat["value"], paper_model, paper_r,
               r_verdict(stat["value"], ci, stat["p_value"], paper_r), population, ci)
    return comparison_frame([row])


def table5_rows(classifier: pd.DataFrame, paper_model: str, protocol: str = "paper",
                population: str = "filtered") -> pd.DataFrame:
    """Table 5: classifier accuracy (%) per feature set, ours vs the paper's.

    Args:
        classifier: :func:`memrecall.analysis.classifier_table` of one model.
        paper_model: :func:`paper_counterpart` of that model.
        protocol: whose rows to compare: ``"paper"`` (the paper's training, the like-for-like
            comparison) or ``"balanced"`` (the quantity then says "class-balanced training").
        population: the idioms the classifier saw.
    """
    table = paper.table5()
    suffix = "" if protocol == "paper" else f", {protocol} training"
    rows = []
    for part in _protocol_rows(classifier, protocol).itertuples():
        theirs = table[table["features"] == part.features].set_index("model")["accuracy_mean"]
        rows.append(_row("table5", f"accuracy % ({part.features}{suffix})", part.model,
                         part.accuracy_mean, paper_model, theirs[paper_model],
                         number_verdict(part.accuracy_mean, theirs[paper_model], PCT_TOL,
                                        digits=1, span=theirs.to_numpy()), population))
    return comparison_frame(rows)


def table5_layers_row(model: str, claim: dict, paper_model: str,
                      population: str = "filtered") -> pd.DataFrame:
    """Table 5's structural point: all-layer probabilities beat the last layer alone.

    Args:
        model: our model.
        claim: its ``classifier_intermediate_layers`` claim row (class-balanced training, paired
            over the splits).
        paper_model: :func:`paper_counterpart` of that model.
        population: the idioms the classifier saw.
    """
    table = paper.table5().set_index(["features", "model"])["accuracy_mean"]
    gaps = {m: table["probability (all layers)", m] - table["probability last layer", m]
            for m in paper.PAPER_MODELS}
    value, ci = claim["value"], (claim["ci_low"], claim["ci_high"])
    paper_side = f"the paper: +{min(gaps.values()):.1f} to +{max(gaps.values()):.1f} points"
    if not np.isfinite(value):
        verdict = f"differs: not measured here; {paper_side}"
    elif ci[0] > 0:
        verdict = f"agrees: all layers add here (interval above 0); {paper_side}"
    elif ci[1] < 0:
        verdict = f"differs: all layers do worse here (interval below 0); {paper_side}"
    else:
        verdict = f"differs: no difference we can tell (interval covers 0); {paper_side}"
    row = _row("table5", "accuracy points, all-layer probabilities minus last-layer probability "
               "(class-balanced training, paired over splits)", model, value, paper_model,
               gaps[paper_model], verdict, population, ci)
    return comparison_frame([row])


def table5_side_by_side(ours: pd.DataFrame, protocol: str = "paper",
                        metric: str = "accuracy") -> pd.DataFrame:
    """Table 5 as the paper prints it, "mean ± sd" per feature set, the paper's models first.

    Args:
        ours: :func:`memrecall.analysis.classifier_table` rows of our models.
        protocol: whose rows to show, ``"paper"`` or ``"balanced"``.
        metric: ``"accuracy"`` (%, beside the paper's) or ``"roc_auc"`` (ours only: the
            paper reports no ROC AUC).

    Returns:
        One row per feature set (the paper's order), one column per model; the paper's columns
        are marked ``(paper)``.
    """
    if metric not in ("accuracy", "roc_auc"):
        raise ValueError(f"metric must be 'accuracy' or 'roc_auc', got {metric!r}")
    ours = _protocol_rows(ours, protocol)
    theirs = paper.table5().assign(model=lambda t: t["model"] + " (paper)")
    both = pd.concat([theirs, ours], ignore_index=True) if metric == "accuracy" else ours
    digits = 1 if metric == "accuracy" else 3
    both = both.assign(text=[f"{m:.{digits}f} ± {s:.{digits}f}" if not np.isnan(m) else "n/a"
                             for m, s in zip(both[f"{metric}_mean"], both[f"{metric}_sd"])])
    table = both.pivot(index="features", columns="model", values="text")
    return table.reindex(index=list(paper.TABLE5_FEATURES),
                         columns=list(dict.fromkeys(both["model"]))).fillna("")


def _protocol_rows(classifier: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The rows of one training protocol; an error naming those there if it has none."""
    rows = classifier[classifier["protocol"] == protocol]
    if rows.empty and not classifier.empty:
        raise ValueError(f"no {protocol!r} rows; protocols here: "
                         f"{sorted(classifier['protocol'].unique())}")
    return rows


def verdict_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """Per analysis and model: "k of n agree" (and how many of the n are uninformative)."""
    marked = rows.assign(agrees=rows["verdict"].str.startswith("agrees"),
                         uninformative=rows["verdict"].str.startswith("uninformative"))
    counts = marked.groupby(["analysis", "model"], sort=False)[["agrees", "uninformative"]] \
        .agg(["sum", "size"])
    agree, size = counts[("agrees", "sum")], counts[("agrees", "size")]
    blank = counts[("uninformative", "sum")]
    text = agree.astype(str) + " of " + size.astype(str) + " agree" + \
        blank.map(lambda u: f" ({u} uninformative)" if u else "")
    return text.unstack("model").reindex([a for a in ANALYSES if a in set(rows["analysis"])])


def _paper_landmarks(curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {m: curve_landmarks(part).set_index("group") for m, part in curves.groupby("model")}


def _ratio_verdict(ours: float, theirs: float, what: str,
                   ci: tuple[float, float] | None = None) -> str:
    """Same side of 1 as the paper's ratio; with an interval, one that excludes 1."""
    if np.isnan(ours):
        return "differs: not measured here"
    here = "higher" if ours > 1 else "lower"
    if ci is not None and ci[0] <= 1 <= ci[1]:
        return (f"differs: {what} {here} here, but the 95% interval [{ci[0]:.2f}, {ci[1]:.2f}] "
                f"covers 1; {'higher' if theirs > 1 else 'lower'} in the paper")
    same = (ours > 1) == (theirs > 1)
    return (f"{'agrees' if same else 'differs'}: {what} {here} here, "
            f"{'higher' if theirs > 1 else 'lower'} in the paper")


LAST_LAYER_NOTE = ("uninformative: reached only at the last layer, where the final prediction "
                   "has rank 0 by definition")


def _landmark_rows(analysis: str, model: str, ours: pd.DataFrame, paper_model: str,
                   paper_curves: pd.DataFrame, groups: Iterable[str],
                   population: str) -> list[dict]:
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
            verdict = (LAST_LAYER_NOTE if column == "depth_below_1" and value >= 1.0
                       else number_verdict(value, reference, tol, span=span))
            rows.append(_row(analysis, f"{label} ({group})", model, value, paper_model,
                             reference, verdict, population))
    return rows


def _earlier_row(analysis: str, model: str, ours: pd.DataFrame, paper_model: str,
                 paper_curves: pd.DataFrame, a: str, b: str, population: str) -> list[dict]:
    """The structural point: ``a`` reaches mean rank < 1 before ``b`` (difference of depths)."""
    mine = curve_landmarks(ours).set_index("group")["depth_below_1"]
    theirs = _paper_landmarks(paper_curves)
    if not {a, b} <= set(mine.index):
        return []
    value = mine[a] - mine[b]
    gaps = {m: t.loc[a, "depth_below_1"] - t.loc[b, "depth_below_1"] for m, t in theirs.items()}
    reference = gaps[paper_model]
    paper_side = ("earlier in all the paper's models" if all(g < 0 for g in gaps.values())
                  else f"earlier in {sum(g < 0 for g in gaps.values())} of its {len(gaps)} models")
    if mine[a] >= 1.0 and mine[b] >= 1.0:
        verdict = f"uninformative: both reach it only at the last layer here; {paper_side}"
    elif value < 0:
        verdict = f"agrees: {a} reach it earlier here; {paper_side}"
    else:
        verdict = f"differs: {a} reach it {'later' if value > 0 else 'together'} here; {paper_side}"
    return [_row(analysis, f"relative depth where mean rank < 1, {a} minus {b}", model, value,
                 paper_model, reference, verdict, population)]


def figure2_rows(model: str, ours: pd.DataFrame, paper_model: str,
                 population: str = "filtered", first_rank: dict | None = None) -> pd.DataFrame:
    """Figure 2: landmarks of the arithmetic mean curves per group, and the first-layer ordering.

    Args:
        model: our model's name.
        ours: :func:`memrecall.analysis.mean_curves` of its labelled idiom + Wikipedia results.
        paper_model: :func:`paper_counterpart` of that model.
        population: the idioms' population.
        first_rank: the ``first_layer_rank`` claim's row (ratio and interval), if computed.
    """
    curves = paper.figure2()
    rows = _landmark_rows("figure2", model, ours, paper_model, curves,
                          ("memorized", "non-memorized", "wikipedia"), population)
    rows += _earlier_row("figure2", model, ours, paper_model, curves, "memorized",
                         "non-memorized", population)
    mine = curve_landmarks(ours).set_index("group")["first_rank"]
    theirs = curve_landmarks(curves[curves["model"] == paper_model]).set_index("group")
    if {"memorized", "non-memorized"} <= set(mine.index):
        ratio = mine["memorized"] / mine["non-memorized"]
        reference = theirs.loc["memorized", "first_rank"] / theirs.loc["non-memorized",
                                                                        "first_rank"]
        ci = (first_rank["ci_low"], first_rank["ci_high"]) if first_rank else None
        rows.append(_row("figure2", "first-layer mean rank, memorized / non-memorized", model,
                         ratio, paper_model, reference,
                         _ratio_verdict(ratio, reference, "memorized predictions start", ci),
                         population, ci))
    return comparison_frame(rows)


def figure4_rows(model: str, ours: pd.DataFrame, paper_model: str = "gpt2-medium") -> pd.DataFrame:
    """Figure 4 (facts): landmarks of the memorized and non-memorized facts' mean curves.

    Args:
        model: our model's name.
        ours: :func:`memrecall.analysis.mean_curves` of its labelled facts results.
        paper_model: the paper reports facts for GPT-2 medium only.
    """
    curves = paper.facts_curves()
    groups = ("facts: memorized", "facts: non-memorized")
    rows = _landmark_rows("figure4", model, ours, paper_model, curves, groups, "facts")
    rows += _earlier_row("figure4", model, ours, paper_model, curves, *groups, "facts")
    return comparison_frame(rows)


def figure5_rows(model: str, curves: pd.DataFrame, summary: pd.DataFrame,
                 population: str = "filtered", claim: dict | None = None,
                 paper_model: str = "gpt2-medium") -> pd.DataFrame:
    """Figure 5: clusters of memorized idioms ending above 0.5, and idioms in gaining clusters.

    Both sides are measured alike: the paper's digitized cluster curves and ours go through
    :func:`memrecall.analysis.cluster_gains` (gain after the curve's promotion point), and a
    cluster "ends above 0.5" when its mean curve's final probability does.

    Args:
        model: our model's name.
        curves: :func:`memrecall.analysis.cluster_curves` of its memorized idioms.
        summary: :func:`memrecall.analysis.cluster_summary` of them.
        population: the idioms' population.
        claim: the ``clusters_boost`` claim's row (value and interval), if computed.
        paper_model: the paper clusters GPT-2 medium only.
    """
    reference = paper.clusters()
    theirs_gains = cluster_gains(reference)
    final = reference.sort_values("layer").groupby("cluster")["prob"].last()
    k = len(summary)
    rows = []
    if k == 0:
        note = "differs: no clusters here (fewer than 2 memorized idioms)"
        rows.append(_row("figure5", "clusters ending above probability 0.5", model, np.nan,
                         paper_model, int((final > 0.5).sum()), note, population))
        rows.append(_row("figure5", "% of memorized idioms in clusters that gain confidence",
                         model, np.nan, paper_model, gaining_share(theirs_gains), note,
                         population))
        return comparison_frame(rows)
    ours_above, theirs_above = int(summary["ends_above_half"].sum()), int((final > 0.5).sum())
    same = (ours_above == k) == (theirs_above == len(final))
    rows.append(_row("figure5", f"clusters ending above probability 0.5 (of {k})", model,
                     ours_above, paper_model, theirs_above,
                     f"{'agrees' if same else 'differs'}: {ours_above} of our {k} clusters, "
                     f"{theirs_above} of the paper's {len(final)}", population))
    share = gaining_share(cluster_gains(curves))
    ci = (claim["ci_low"], claim["ci_high"]) if claim else None
    n_gain = int(theirs_gains["gains"].sum())
    rows.append(_row("figure5", "% of memorized idioms in clusters that gain confidence", model,
                     share, paper_model, gaining_share(theirs_gains),
                     number_verdict(share, gaining_share(theirs_gains), PCT_TOL, digits=1,
                                    interval=ci)
                     + f" (the paper: {n_gain} of its {len(theirs_gains)} clusters gain, "
                     "measured on its digitized curves)", population, ci))
    return comparison_frame(rows)
