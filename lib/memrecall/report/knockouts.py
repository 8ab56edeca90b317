"""What people read about the knockouts: the CSV, the verdicts and the rows beside the paper.

Layers become **1-based** here (:func:`memrecall.report.to_display_layer`); the numbers come from
:mod:`memrecall.analysis.knockouts`. The paper's numbers are its digitized Figures 3 and 7 (GPT-2
medium, 100 memorized idioms, k = 10, :mod:`memrecall.data.paper`), and Figure 9's layer-1
cells in its unit (the decrease of the target's probability in % of its clean value).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import knockouts as ks
from ..data import paper
from ..interventions import PAPER_CONTROLS, window_matrix
from .paper import PCT_TOL, comparison_frame, comparison_row, number_verdict
from .tables import to_display_layer, write_csv

__all__ = ["FIGURES", "KNOCKOUT_COLUMNS", "PAPER_PANEL", "beside_paper_panels", "depth_lines",
           "figure3_rows", "figure9_rows", "knockout_verdicts", "knockouts_csv", "paper_depth_line",
           "reference_group", "write_knockouts_csv"]

KNOCKOUT_COLUMNS = ["group", "control", "k", "start_layer", "end_layer", "n_probes",
                    "changed_pct", "target_rank_change", "target_prob_change"]
"""Columns of ``results/<profile>/knockouts_<model>.csv``."""

PAPER_MODEL = "gpt2-medium"
SPLIT = 0.4  # the paper: the effect falls over the first ~40% of the layers, then flattens
FLAT = 0.5  # "flattens": the late slope is less than half the early one (in magnitude)


def knockouts_csv(summary: pd.DataFrame) -> pd.DataFrame:
    """A sweep summary as the rows of ``knockouts_<model>.csv``: one per (group, control, window).

    Args:
        summary: :func:`memrecall.interventions.summarize_sweep` (or
            :func:`memrecall.analysis.knockout_table`) with a ``group`` column.

    Returns:
        Exactly :data:`KNOCKOUT_COLUMNS`; layers 1-based; ``changed_pct`` in %,
        ``target_rank_change`` the mean of (rank after - rank before), ``target_prob_change``
        the mean of (probability after - before) in percentage points.
    """
    out = summary.assign(start_layer=to_display_layer(summary["start_layer"]),
                         end_layer=to_display_layer(summary["end_layer"]))
    return out[KNOCKOUT_COLUMNS].reset_index(drop=True)


def write_knockouts_csv(summary: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write :func:`knockouts_csv` of ``summary`` to ``path`` (:func:`write_csv`); the rows."""
    rows = knockouts_csv(summary)
    write_csv(rows, path)
    return rows


def paper_depth_line(control: str = "non_dominant", window: int = 3,
                     figure: str = "figure3") -> pd.DataFrame:
    """The paper's windows of one size as a line (Figure 7: non-dominant, 3 layers).

    Returns:
        ``start_layer`` (0-based), ``layer`` (1-based), ``depth`` (relative, as ours) and
        ``value``, by start layer.
    """
    frame = paper.knockouts(figure)
    rows = frame[(frame["kind"] == ks.PAPER_KINDS[control]) & (frame["window"] == window)]
    rows = rows.sort_values("start")
    n_layers = paper.n_layers(PAPER_MODEL)
    return pd.DataFrame({"start_layer": rows["start"].to_numpy() - 1,
                         "layer": rows["start"].to_numpy(),
                         "depth": rows["start"].to_numpy() / n_layers,
                         "value": rows["value"].to_numpy()})


def reference_group(groups: Iterable[pd.Series]) -> str:
    """The group shown beside the paper: ``memorized``, or ``non-memorized`` if none is there.

    ``groups`` are ``group`` columns (one per model, or a single probe frame's).
    """
    return "memorized" if any((g == "memorized").any() for g in groups) else "non-memorized"


def _paper_table() -> pd.DataFrame:
    """The paper's Figure 3 as rows like :func:`knockout_table` (no intervals)."""
    frame = paper.knockouts("figure3")
    kinds = {v: k for k, v in ks.PAPER_KINDS.items()}
    return pd.DataFrame({"control": frame["kind"].map(kinds), "window": frame["window"],
                         "start_layer": frame["start"] - 1, "end_layer": frame["end"] - 1,
                         "changed_pct": frame["value"]})


def _paper_slopes(control: str = "non_dominant", window: int = 3) -> dict:
    line = paper_depth_line(control, window)
    return ks.line_slopes(line["depth"], line["value"], line["start_layer"], SPLIT)


def _answer(yes: bool) -> str:
    return "yes" if yes else "no"


def _falls(slopes: dict) -> bool:
    hi = slopes.get("early_hi", slopes["early_slope"])
    return bool(np.isfinite(hi) and hi < 0)


def _flattens(slopes: dict) -> bool:
    """Whether the line is flat after its early fall.

    With an interval (ours): one that covers 0 (a late slope whose interval excludes 0 is a
    rise or a fall, not flat); without one (the paper's digitized line): a late slope under
    ``FLAT`` of the early one.
    """
    early, late = slopes["early_slope"], slopes["late_slope"]
    if not (np.isfinite(early) and np.isfinite(late) and early < 0):
        return False
    lo, hi = slopes.get("late_lo", np.nan), slopes.get("late_hi", np.nan)
    if np.isfinite(lo) and np.isfinite(hi):
        return bool(lo <= 0 <= hi)
    return bool(abs(late) < FLAT * abs(early))


def knockout_verdicts(table: pd.DataFrame, detail: pd.DataFrame, n_layers: int,
                      reference: str = "memorized") -> list[str]:
    """The paper's two readings of Figures 3 and 7, computed for one model, next to the paper's.

    1. Does layer 1 dominate? (a 1-layer knockout of layer 1 changes more predictions than of
       any other single layer, the intervals apart), for the dominant and non-dominant control.
    2. Does the effect fall over the first ~40% of the layers (3-layer non-dominant windows from
       layer 2: slope below 0, its interval too) and flatten after (the late slope less than
       half the early one)?

    Args:
        table: :func:`memrecall.analysis.knockout_table` of the sweep.
        detail: the per-probe sweep.
        n_layers: the model's layers.
        reference: the group read (the paper's: memorized idioms).

    Returns:
        One line per reading; one line saying so when there are no ``reference`` probes.
    """
    if "group" not in table.columns or not (table["group"] == reference).any():
        return [f"no {reference} probes: nothing to read (only the comparison groups ran)"]
    theirs = _paper_table()
    lines = []
    for control in ("non_dominant", "dominant"):
        ours = ks.first_layer_dominance(table, control, reference)
        paper_side = ks.first_layer_dominance(theirs, control)
        if ours is None:
            continue
        lines.append(
            f"{control}, {reference}: layer 1 alone changes {ours['first']:.0f}% "
            f"[{ours['first_lo']:.0f}, {ours['first_hi']:.0f}] vs at most {ours['other']:.0f}% "
            f"[{ours['other_lo']:.0f}, {ours['other_hi']:.0f}] (layer "
            f"{to_display_layer(ours['other_layer'])}) elsewhere -> layer 1 dominates: "
            f"{_answer(ours['dominates'])} (paper: {paper_side['first']:.0f}% vs at most "
            f"{paper_side['other']:.0f}%: {_answer(paper_side['dominates'])})")
    slopes = ks.depth_slopes(detail, n_layers, "non_dominant", 3, SPLIT)
    mine = slopes[slopes["group"] == reference]
    if len(mine) and mine.iloc[0]["n_early"] < 2:
        lines.append(f"non_dominant 3-layer windows, {reference}: fewer than 2 windows between "
                     f"layer 2 and {SPLIT:.0%} depth ({n_layers} layers): slopes untested")
    elif len(mine):
        s, p = mine.iloc[0].to_dict(), _paper_slopes()
        lines.append(
            f"non_dominant 3-layer windows, {reference}: slope from layer 2 to {SPLIT:.0%} depth "
            f"{s['early_slope']:+.0f} [{s['early_lo']:+.0f}, {s['early_hi']:+.0f}] points per "
            f"unit depth -> falls: {_answer(_falls(s))} (paper: {p['early_slope']:+.0f}: "
            f"{_answer(_falls(p))})")
        lines.append(
            f"non_dominant 3-layer windows, {reference}: slope after {SPLIT:.0%} depth "
            f"{s['late_slope']:+.0f} [{s['late_lo']:+.0f}, {s['late_hi']:+.0f}] -> flattens "
            f"(interval covers 0): {_answer(_flattens(s))} (paper: {p['late_slope']:+.0f}, "
            f"less than {FLAT:.0%} of its early slope: {_answer(_flattens(p))})")
    return lines


def _cell(table: pd.DataFrame, control: str, start: int, window: int,
          column: str = "changed_pct") -> float:
    rows = table[(table["control"] == control) & (table["start_layer"] == start)
                 & (table["window"] == window)]
    return float(rows[column].iloc[0]) if len(rows) and column in rows else np.nan


def _interval(table: pd.DataFrame, control: str, start: int, window: int
              ) -> tuple[float, float] | None:
    lo, hi = (_cell(table, control, start, window, f"changed_pct_{e}") for e in ("lo", "hi"))
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None


def _row(quantity: str, model: str, ours: float, paper_value: float, verdict: str,
         population: str = "filtered", ci: tuple[float, float] | None = None) -> dict:
    return comparison_row("figure3", quantity, model, ours, PAPER_MODEL, paper_value, verdict,
                          population, ci)


def figure3_rows(model: str, table: pd.DataFrame, detail: pd.DataFrame, n_layers: int,
                 reference: str = "memorized", population: str = "filtered") -> pd.DataFrame:
    """The ``figure3`` rows of ``paper_comparison.csv`` for one model (memorized idioms).

    Quantities (ours vs GPT-2 medium's digitized Figure 3): % changed by the non-dominant and
    the dominant knockout of layer 1 alone; by the non-dominant 3-layer window from layer 2 and
    the one at the relative depth of the paper's layers 8-10; the mean over non-dominant 3-layer
    windows past 40% of the depth and over single upper layers; the largest dominant effect
    without layer 1; whether layer 1 dominates; the early and late slopes of Figure 7.

    ``population``: the idioms the probes were drawn from. Cells carry their bootstrap
    intervals; the paper's value inside ours agrees (:func:`number_verdict`).

    Returns:
        Rows with the columns of :data:`memrecall.report.COMPARISON_COLUMNS`; none without
        ``reference`` probes.
    """
    rows = table[table["group"] == reference] if "group" in table.columns else table
    if rows.empty:
        return comparison_frame([])
    theirs = _paper_table()
    paper_layers = paper.n_layers(PAPER_MODEL)
    out = []

    def compare(quantity: str, ours: float, paper_value: float,
                ci: tuple[float, float] | None = None) -> None:
        out.append(_row(quantity, model, ours, paper_value,
                        number_verdict(ours, paper_value, PCT_TOL, digits=1, interval=ci),
                        population, ci))

    for control in ("non_dominant", "dominant"):
        compare(f"% changed, {control}, layer 1 alone", _cell(rows, control, 0, 1),
                _cell(theirs, control, 0, 1), _interval(rows, control, 0, 1))
    compare("% changed, non_dominant, 3-layer window from layer 2",
            _cell(rows, "non_dominant", 1, 3), _cell(theirs, "non_dominant", 1, 3),
            _interval(rows, "non_dominant", 1, 3))
    target = 8 / paper_layers  # the paper's layers 8-10
    start = int(np.clip(round(target * n_layers) - 1, 0, n_layers - 3))
    compare(f"% changed, non_dominant, 3-layer window at relative depth {target:.2f} "
            f"(ours: layers {start + 1}-{start + 3}; paper: 8-10)",
            _cell(rows, "non_dominant", start, 3), _cell(theirs, "non_dominant", 7, 3),
            _interval(rows, "non_dominant", start, 3))

    def upper_mean(frame: pd.DataFrame, layers: int, control: str, window: int) -> float:
        part = frame[(frame["control"] == control) & (frame["window"] == window)]
        deep = ks.window_depth(part["start_layer"], layers) > SPLIT
        return float(part.loc[deep, "changed_pct"].mean())

    compare(f"mean % changed, non_dominant 3-layer windows past {SPLIT:.0%} depth",
            upper_mean(rows, n_layers, "non_dominant", 3),
            upper_mean(theirs, paper_layers, "non_dominant", 3))
    compare(f"mean % changed, non_dominant single layers past {SPLIT:.0%} depth",
            upper_mean(rows, n_layers, "non_dominant", 1),
            upper_mean(theirs, paper_layers, "non_dominant", 1))

    def without_first(frame: pd.DataFrame) -> float:
        part = frame[(frame["control"] == "dominant") & (frame["start_layer"] > 0)]
        return float(part["changed_pct"].max())

    compare("largest % changed, dominant, windows without layer 1", without_first(rows),
            without_first(theirs))

    ours, paper_side = (ks.first_layer_dominance(rows, "non_dominant", reference),
                        ks.first_layer_dominance(theirs, "non_dominant"))
    if ours is not None:
        gap, paper_gap = ours["first"] - ours["other"], paper_side["first"] - paper_side["other"]
        same = ours["dominates"] == paper_side["dominates"]
        out.append(_row("layer 1 minus the strongest other single layer, non_dominant (points)",
                        model, gap, paper_gap,
                        f"{'agrees' if same else 'differs'}: layer 1 dominates "
                        f"{'here' if ours['dominates'] else 'not here'} (intervals apart), "
                        f"{'and' if paper_side['dominates'] else 'not'} in the paper",
                        population))
    slopes = ks.depth_slopes(detail, n_layers, "non_dominant", 3, SPLIT)
    mine = slopes[slopes["group"] == reference] if "group" in slopes.columns else slopes
    if len(mine):
        s, p = mine.iloc[0].to_dict(), _paper_slopes()
        for part, verdict_of in (("early", _falls), ("late", _flattens)):
            what = "falls" if part == "early" else "flattens"
            same = verdict_of(s) == verdict_of(p)
            out.append(_row(
                f"slope of % changed per unit depth, non_dominant 3-layer windows, {part} "
                f"({'layer 2 to' if part == 'early' else 'past'} {SPLIT:.0%} depth)", model,
                s[f"{part}_slope"], p[f"{part}_slope"],
                f"{'agrees' if same else 'differs'}: {what} "
                f"{'here' if verdict_of(s) else 'not here'} [{s[f'{part}_lo']:+.0f}, "
                f"{s[f'{part}_hi']:+.0f}], {'and' if verdict_of(p) else 'not'} in the paper",
                population, (s[f"{part}_lo"], s[f"{part}_hi"])))
    return comparison_frame(out)


def figure9_rows(model: str, table: pd.DataFrame, reference: str = "memorized",
                 ci: float = 0.95, population: str = "filtered") -> pd.DataFrame:
    """Figure 9's layer-1 cells beside ours, in the paper's unit, for ``paper_comparison.csv``.

    Quantities (ours vs GPT-2 medium's digitized Figure 9): the mean *decrease* of the target's
    probability in % of its clean value, ``100 * (before - after) / before`` averaged over
    probes (positive when it falls, as the paper draws it; the negative of
    ``target_prob_change_rel``), when layer 1 alone is knocked out, for the non-dominant and
    the dominant control.

    Args:
        model: our model's name.
        table: :func:`memrecall.analysis.knockout_table` of its sweep (with
            ``target_prob_change_rel``).
        reference: the group compared (the paper's: memorized idioms).
        ci: the coverage of the table's intervals (named in the verdict).
        population: the idioms the probes were drawn from.

    Returns:
        Rows of :data:`memrecall.report.COMPARISON_COLUMNS`, one per control with a layer-1
        cell (``ci_low``, ``ci_high``: the interval of the decrease; the verdict: within
        :data:`PCT_TOL` points of the paper or the paper's value inside our interval); none
        without ``reference`` probes.

    Raises:
        ValueError: ``table`` has no ``target_prob_change_rel`` (a sweep without target
            probabilities).
    """
    value = "target_prob_change_rel"
    if value not in table.columns:
        raise ValueError(f"the table has no {value!r}: make it with knockout_table from a sweep "
                         "with targets (base_target_prob, target_prob)")
    rows = table[table["group"] == reference] if "group" in table.columns else table
    out = []
    for control in ("non_dominant", "dominant"):
        cell = rows[(rows["control"] == control) & (rows["start_layer"] == 0)
                    & (rows["window"] == 1)]
        if cell.empty:
            continue
        cell = cell.iloc[0]
        ours, low, high = -cell[value], -cell[f"{value}_hi"], -cell[f"{value}_lo"]
        paper_value = float(ks.paper_window_matrix("figure9", control).loc[0, 0])
        inside = "inside" if low <= paper_value <= high else "outside"
        verdict = (f"{number_verdict(ours, paper_value, PCT_TOL, digits=1, interval=(low, high))}"
                   f"; the paper's value "
                   f"is {inside} our {ci:.0%} interval [{low:.1f}, {high:.1f}]")
        quantity = (f"mean decrease of the target's probability, % of its clean value, "
                    f"{control}, layer 1 alone ({reference}, n={int(cell['n_probes'])})")
        out.append(comparison_row("figure9", quantity, model, float(ours), PAPER_MODEL,
                                  paper_value, verdict, population, (float(low), float(high))))
    return comparison_frame(out)


PAPER_PANEL = "paper: GPT-2 medium, 100 memorized (digitized)"
"""The column title of the paper's panels."""

FIGURES: dict[str, tuple[str | None, float]] = {
    "changed_pct": ("figure3", 1.0), "target_rank_change": ("figure8", 1.0),
    "target_prob_change": (None, -1.0), "target_prob_change_rel": ("figure9", -1.0)}
"""Our read-out -> the paper's figure in the same unit (None: none) and the sign that turns ours
into the drawn quantity. Figure 9 draws the *decrease* of the target's probability in % of its
clean value (its cells reach 95.5 where GPT-2 medium's memorized targets average about 0.64:
relative, not points), so it pairs with ``target_prob_change_rel``; ``target_prob_change``
(points of absolute probability) has no counterpart in the paper."""


def beside_paper_panels(tables: dict[str, pd.DataFrame], value: str = "changed_pct",
                        group: str = "memorized",
                        controls: tuple[str, ...] = PAPER_CONTROLS,
                        ) -> dict[str, dict[str, pd.DataFrame]]:
    """Start x end matrices of each model beside the paper's, for :func:`plots.plot_heatmaps`.

    Args:
        tables: ``{model: knockout_table}`` (one k).
        value: ``changed_pct`` (Figure 3), ``target_rank_change`` (Figure 8),
            ``target_prob_change_rel`` (Figure 9: the *decrease* of the target's probability in
            % of its clean value, ``100 * (before - after) / before``, positive when it falls,
            as the paper draws it) or ``target_prob_change`` (the decrease in points of
            absolute probability: no paper panel, the paper has none in that unit).
        group: our group shown (the paper's: memorized idioms).
        controls: rows of panels.

    Returns:
        ``{control: {"<model> (n=..)": matrix, ..., PAPER_PANEL: matrix}}``, 0-based layers
        (no :data:`PAPER_PANEL` for a read-out without a counterpart in :data:`FIGURES`).
    """
    figure, sign = FIGURES[value]
    panels: dict[str, dict[str, pd.DataFrame]] = {}
    for control in controls:
        row = {}
        for model, table in tables.items():
            part = table[(table["group"] == group) & (table["control"] == control)]
            if len(part):
                label = f"{model}, {group} (n={int(part['n_probes'].iloc[0])})"
                row[label] = sign * window_matrix(part, control=control, value=value)
        if figure is not None:
            row[PAPER_PANEL] = ks.paper_window_matrix(figure, control)
        panels[control.replace("_", "-")] = row
    return panels


def depth_lines(tables: dict[str, tuple[pd.DataFrame, int]], group: str = "memorized",
                control: str = "non_dominant", window: int = 3,
                value: str = "changed_pct") -> pd.DataFrame:
    """Windows of one size by relative depth, per model (the paper's Figure 7 for ours).

    Args:
        tables: ``{model: (knockout_table, n_layers)}``.
        group: the group.
        control: the control.
        window: the window size.
        value: the read-out (with ``_lo`` / ``_hi`` intervals in the table).

    Returns:
        ``model, layer`` (1-based first layer), ``depth``, ``value``, ``lo``, ``hi``.
    """
    frames = []
    for model, (table, n_layers) in tables.items():
        rows = table[(table["group"] == group) & (table["control"] == control)
                     & (table["window"] == window)].sort_values("start_layer")
        frames.append(pd.DataFrame({
            "model": model, "layer": to_display_layer(rows["start_layer"].to_numpy()),
            "depth": ks.window_depth(rows["start_layer"], n_layers),
            "value": rows[value].to_numpy(), "lo": rows[f"{value}_lo"].to_numpy(),
            "hi": rows[f"{value}_hi"].to_numpy()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["model", "layer", "depth", "value", "lo", "hi"])
