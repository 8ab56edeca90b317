"""README's result blocks as Markdown, from the results' frames: one table or bullet list each.

Numbers as people read them: 1 decimal for percentages and points, 2 for effect sizes,
correlations, probabilities and KL, 3 for the mean confidence boost (often below 0.01), counts
whole; intervals as ``[lo, hi]``, a true minus sign. The verdict
sentences say only what the verdicts say. :mod:`memrecall.report.readme` reads the CSVs and
writes these into README.md (``make readme``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..analysis.lens_convergence import REFERENCES, lens_admission
from .lenses import depth_layer
from .paper import ANALYSES

__all__ = [
    "BASELINE",
    "claim_verdicts_block",
    "claims_block",
    "lens_kl_block",
    "lens_verdicts_block",
    "paper_comparison_block",
    "paper_differs_block",
    "summary_block",
    "timings_block",
]

BASELINE = ("filtered", "logit")
"""(population, lens) of the claims' headline verdicts."""

VERDICTS = ("supported", "contradicted", "inconclusive")
"""A claim's verdicts, in the order the verdict bullets list them."""

KL_DEPTHS = (0.25, 0.5, 0.75)
"""Relative depths of the ``lens-kl`` block."""


# --------------------------------------------------------------------------- formatting


def _num(value: Any, digits: int) -> str:
    """``value`` to ``digits`` decimals with a true minus sign; a dash when missing."""
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):.{digits}f}".replace("-", "−")


def _signed(value: Any, digits: int) -> str:
    """:func:`_num` with a plus sign on a positive value."""
    text = _num(value, digits)
    return "+" + text if text != "–" and float(value) > 0 else text


def _with_interval(value: Any, low: Any, high: Any, digits: int) -> str:
    """``value [low, high]``, or the value alone when the interval is missing."""
    if pd.isna(low) or pd.isna(high):
        return _num(value, digits)
    return f"{_num(value, digits)} [{_num(low, digits)}, {_num(high, digits)}]"


def _digits(what: str) -> int:
    """Decimals for a quantity named ``what``: 1 for % and points, 0 for counts, else 2."""
    if "%" in what or "points" in what or "pct" in what:
        return 1
    return 0 if "(of " in what else 2


def _layer(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def _listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _order(values: pd.Series, first: Sequence[str] = ()) -> list[str]:
    """Distinct values, ``first`` (those present) leading, then in order of appearance."""
    seen = list(dict.fromkeys(values))
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def _variant(population: str, lens: str) -> str:
    parts = [] if population == BASELINE[0] else [f"with {population} idioms"]
    return " ".join(parts + ([] if lens == BASELINE[1] else [f"under the {lens} lens"]))


# --------------------------------------------------------------------------- blocks


def _group_keys(summary: pd.DataFrame) -> list[str]:
    prefix = "median_promotion_layer_1based_"
    return [c.removeprefix(prefix) for c in summary.columns if c.startswith(prefix)]


def _group_name(key: str) -> str:
    """A ``summary.csv`` group key as people read it: ``non_memorized`` -> ``non-memorized``."""
    return "Wikipedia" if key == "wikipedia" else key.replace("facts_", "facts: ").replace("_", "-")


def summary_block(summary: pd.DataFrame) -> str:
    """Per model: layers, memorized idioms, median promotion layer and mean boost per group.

    Args:
        summary: ``summary.csv`` (:func:`memrecall.report.summary_table` columns).
    """
    keys = _group_keys(summary)
    names = " / ".join(map(_group_name, keys))
    header = ["model", "layers", "memorized idioms", "Wikipedia texts",
              f"median promotion layer: {names}", f"mean confidence boost: {names}"]
    rows = [[row["model"], f"{int(row['n_layers'])}",
             f"{int(row['n_memorized']):,} / {int(row['n_idioms']):,} "
             f"({_num(row['memorized_pct'], 1)}%)",
             "–" if pd.isna(row.get("n_wikipedia")) else f"{int(row['n_wikipedia']):,}",
             " / ".join(_layer(row[f"median_promotion_layer_1based_{k}"]) for k in keys),
             " / ".join(_signed(row[f"mean_confidence_boost_{k}"], 3) for k in keys)]
            for _, row in summary.iterrows()]
    return _table(header, rows)


def _claim_cell(row: pd.Series) -> str:
    number = _with_interval(row["value"], row["ci_low"], row["ci_high"],
                            _digits(str(row["statistic"])))
    return row["verdict"] if number == "–" else f"{row['verdict']} {number}"


def _claims_grid(claims: pd.DataFrame, index: Sequence[str], columns: str) -> pd.DataFrame:
    """Cells "verdict value [lo, hi]", one row per ``index`` key, one column per ``columns``."""
    cells = claims.assign(cell=claims.apply(_claim_cell, axis=1))
    first = [BASELINE[1]] if columns == "lens" else []
    grid = cells.pivot(index=list(index), columns=columns, values="cell")
    keys = cells[list(index)].drop_duplicates()
    return grid.reindex(pd.MultiIndex.from_frame(keys) if len(index) > 1 else keys[index[0]],
                        columns=_order(cells[columns], first)).fillna("–")


def claims_block(claims: pd.DataFrame) -> str:
    """The claims under the baseline (filtered idioms, logit lens): one row per claim.

    Args:
        claims: ``claims.csv``: ``claim, model, population, lens, statistic, value, ci_low,
            ci_high, p_value, n, verdict``.
    """
    base = claims[(claims["population"] == BASELINE[0]) & (claims["lens"] == BASELINE[1])]
    grid = _claims_grid(base, ["claim"], "model")
    statistic = base.groupby("claim", sort=False)["statistic"].agg(_shared_statistic)
    rows = [[claim, statistic[claim], *grid.loc[claim]] for claim in grid.index]
    return _table(["claim", "statistic", *grid.columns], rows)


def _shared_statistic(texts: pd.Series) -> str:
    """One statistic text for a claim's row of the README table.

    The models' own text when they agree, else the ``; ``-separated parts they share (a model's
    details, such as its window size, stay in ``claims.csv``).
    """
    unique = list(dict.fromkeys(texts))
    if len(unique) == 1:
        return unique[0]
    parts = [part.split("; ") for part in unique]
    shared = [part for part in parts[0] if all(part in other for other in parts[1:])]
    return "; ".join(shared + ["each model's details in claims.csv"])


def claim_verdicts_block(claims: pd.DataFrame, paper: Mapping[str, Any] | None = None) -> str:
    """One bullet per claim saying where it holds, then the verdicts a lens or population flips.

    Args:
        claims: ``claims.csv`` rows.
        paper: claim id -> the claim, whose ``sentence`` is the paper's sentence
            (``memrecall.analysis.claims.CLAIMS``); a claim not in it is named by its id alone.
    """
    paper = paper or {}
    is_base = (claims["population"] == BASELINE[0]) & (claims["lens"] == BASELINE[1])
    base = claims[is_base]
    bullets = []
    for claim, part in base.groupby("claim", sort=False):
        said = [f"{verdict} in {_listing(list(part.loc[part['verdict'] == verdict, 'model']))}"
                for verdict in _order(part["verdict"], VERDICTS)]
        sentence = f" The paper: “{paper[claim].sentence}”" if claim in paper else ""
        bullets.append(f"- **{claim}**: {', '.join(said)} ({BASELINE[0]} idioms, "
                       f"{BASELINE[1]} lens).{sentence}")
    verdicts = base.set_index(["claim", "model"])["verdict"]
    flips = []
    for row in claims[~is_base].itertuples():
        before = verdicts.get((row.claim, row.model))
        if before is not None and before != row.verdict:
            flips.append(f"{row.claim} in {row.model} ({before} → {row.verdict} "
                         f"{_variant(row.population, row.lens)})")
    if flips:
        bullets.append(f"- Verdicts that flip under a fitted lens or with all idioms: "
                       f"{'; '.join(flips)}.")
    elif (~is_base).any():
        bullets.append("- No verdict flips under a fitted lens or with all idioms.")
    return "\n".join(bullets)


def _comparison_outcome(verdict: pd.Series) -> pd.Series:
    return verdict.str.extract(r"^(agrees|differs|uninformative)", expand=False)


def paper_comparison_block(comparison: pd.DataFrame) -> str:
    """Per analysis and model: "k agree, m differ, u uninformative".

    Args:
        comparison: ``paper_comparison.csv`` (old or new columns).
    """
    outcome = comparison.assign(outcome=_comparison_outcome(comparison["verdict"]))
    counts = outcome.groupby(["analysis", "model", "outcome"], sort=False).size()
    models = _order(comparison["model"])
    rows = [[analysis, *(", ".join(f"{counts.get((analysis, model, o), 0)} {word}" for o, word in
                                   (("agrees", "agree"), ("differs", "differ"),
                                    ("uninformative", "uninformative")))
                         for model in models)]
            for analysis in _order(comparison["analysis"], ANALYSES)]
    return _table(["analysis", *models], rows)


def paper_differs_block(comparison: pd.DataFrame) -> str:
    """The rows whose verdict is ``differs``: quantity, model, ours [interval], the paper's.

    Args:
        comparison: ``paper_comparison.csv`` (old or new columns).
    """
    differ = comparison[_comparison_outcome(comparison["verdict"]) == "differs"]
    shown_population = "population" in differ and differ["population"].notna().any()
    rows = []
    for _, row in differ.iterrows():
        digits = _digits(str(row["quantity"]))
        population = [] if not shown_population else [
            "" if pd.isna(row["population"]) else row["population"]]
        rows.append([row["analysis"], row["quantity"], *population, row["model"],
                     _with_interval(row["ours"], row.get("ci_low"), row.get("ci_high"), digits),
                     f"{_num(row['paper_value'], digits)} ({row['paper_model']})"])
    header = ["analysis", "quantity", *(["population"] if shown_population else []), "model",
              "ours", "paper"]
    return _table(header, rows)


def lens_kl_block(kl: pd.DataFrame, depths: Sequence[float] = KL_DEPTHS) -> str:
    """Per model and lens: held-out KL (bits) at a few depths and its mean before the output.

    When ``kl`` holds standard errors and every lens the convergence rule judges, a last column
    gives the rule's decision (:func:`memrecall.analysis.lens_admission`).

    Args:
        kl: ``lens_kl.csv``: ``lens, layer`` (0-based), ``kl_bits``, ``model`` (``se_bits``).
        depths: relative depths, each shown at :func:`memrecall.report.depth_layer`.
    """
    judged = "se_bits" in kl and {*REFERENCES, *(r for refs in REFERENCES.values()
                                                 for r in refs)} <= set(kl["lens"])
    decisions = {} if not judged else {
        (row.model, row.lens): ("admitted" if row.admitted
                                else f"left out: layers {row.failing_layers}")
        for row in lens_admission(kl).itertuples()}
    rows = []
    for model in _order(kl["model"]):
        part = kl[kl["model"] == model]
        n_layers = int(part["layer"].max()) + 1
        for lens in _order(part["lens"]):
            bits = part[part["lens"] == lens].set_index("layer")["kl_bits"]
            rows.append([model, lens,
                         *(f"{_num(bits.get(depth_layer(d, n_layers) - 1), 2)} (layer "
                           f"{depth_layer(d, n_layers)} of {n_layers})" for d in depths),
                         _num(bits[bits.index < n_layers - 1].mean(), 2),
                         *([decisions.get((model, lens), "—")] if judged else [])])
    header = ["model", "lens", *(f"KL at {d:.0%} depth" for d in depths),
              "mean KL over all layers but the last", *(["convergence rule"] if judged else [])]
    return _table(header, rows)


def lens_verdicts_block(frame: pd.DataFrame) -> str:
    """The verdicts under each lens: from ``claims.csv`` rows, or ``lens_choice.csv``.

    Args:
        frame: ``claims.csv`` (filtered idioms: one row per claim and model, one column per
            lens, the logit lens first) or ``lens_choice.csv`` (``model, lens, two_step,
            promotion_delta, boost_delta, change``).
    """
    if "claim" in frame:
        grid = _claims_grid(frame[frame["population"] == BASELINE[0]], ["claim", "model"], "lens")
        return _table(["claim", "model", *(f"{lens} lens" for lens in grid.columns)],
                      [[*key, *cells] for key, cells in zip(grid.index, grid.values,
                                                            strict=True)])
    rows = [[row.model, row.lens, row.two_step, _signed(row.promotion_delta, 2),
             _signed(row.boost_delta, 2), row.change] for row in frame.itertuples()]
    return _table(["model", "lens", "two-step picture", "promotion δ", "boost δ",
                   "change from the logit lens"], rows)


def _wall_time(seconds: float) -> str:
    """``33 s``, ``14 min 2 s (842 s)``, ``1 h 40 min (6,012 s)``: seconds added from a minute."""
    whole = round(float(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    shown = f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"
    return f"{shown} ({whole:,} s)"


def timings_block(timings: pd.DataFrame) -> str:
    """Each notebook's wall time in ``make reproduce``, the code that ran it, and the total.

    Args:
        timings: ``timings.csv`` (:data:`memrecall.report.TIMING_COLUMNS`).
    """
    rows = [[row["notebook"], _wall_time(row["seconds"]), f"`{row['code_fingerprint']}`"]
            for _, row in timings.iterrows()]
    rows.append([f"all {len(timings)}", f"**{_wall_time(timings['seconds'].sum())}**", ""])
    return _table(["notebook", "wall time", "code fingerprint"], rows)
