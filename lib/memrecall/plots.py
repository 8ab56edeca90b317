"""Figures: every function takes a ``path``, saves PDF and PNG, and leaves no open figure.

Figures are built on :class:`matplotlib.figure.Figure` directly (never registered with pyplot),
so importing this module changes no backend, a notebook's inline display keeps working, and
nothing leaks between calls. Each function returns a :class:`SavedFigure`: the (already saved)
figure plus both paths; as the last expression of a notebook cell it shows the PNG, which keeps
rendered notebooks small.

Style: Okabe–Ito colour-blind-safe colours, one fixed colour per group in every figure
(:data:`GROUP_COLORS`), 1-based layer numbers on axes, units or scales in axis labels. Titles come
from the caller and should name the model (and say "smoke test: random weights" for tiny models).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    MaxNLocator,
    NullLocator,
)

from ._io import atomic_write
from .report import to_display_layer
from .stats import group_order, normalised_depth

OKABE_ITO = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "purple": "#CC79A7", "sky": "#56B4E9", "yellow": "#F0E442", "black": "#000000",
}

GROUP_COLORS = {
    "memorized": OKABE_ITO["vermillion"],
    "non-memorized": OKABE_ITO["blue"],
    "wikipedia": OKABE_ITO["green"],
    "facts: memorized": OKABE_ITO["purple"],
    "facts: non-memorized": OKABE_ITO["sky"],
}
"""The colour of each group, the same in every figure."""

_SPARE_COLORS = [OKABE_ITO[k] for k in ("orange", "yellow", "black")]
MODEL_LINESTYLES = ("-", "--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)))  # the smoke profile has 5
PNG_DPI = 120
SPLIT_LABEL = "Candidate Promotion | Confidence Boosting"

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "legend.frameon": False, "savefig.bbox": "tight", "pdf.fonttype": 42,
}


def group_color(group: str) -> str:
    """Colour of a group: :data:`GROUP_COLORS`, else a spare Okabe–Ito colour fixed by its name."""
    if group in GROUP_COLORS:
        return GROUP_COLORS[group]
    return _SPARE_COLORS[zlib.crc32(group.encode()) % len(_SPARE_COLORS)]


# --------------------------------------------------------------------------- saving


@dataclass(frozen=True)
class SavedFigure:
    """A saved, closed figure and its files; shows its PNG when it ends a notebook cell."""

    figure: Figure
    pdf: Path
    png: Path

    def _repr_png_(self) -> bytes:
        return self.png.read_bytes()


def save_figure(fig: Figure, path: str | Path) -> SavedFigure:
    """Write ``path`` as ``.pdf`` and ``.png`` (a ``.pdf``/``.png`` suffix is replaced).

    Each file is written atomically (a temp file renamed into place), so a reader or a
    concurrent run never sees half a figure.
    """
    base = Path(path)
    if base.suffix.lower() in (".pdf", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = base.with_name(base.name + ".pdf"), base.with_name(base.name + ".png")
    # No timestamps in the files: a rerun that draws the same figure writes the same bytes.
    atomic_write(pdf, lambda temp: fig.savefig(temp, format="pdf",
                                              metadata={"CreationDate": None}))
    atomic_write(png, lambda temp: fig.savefig(temp, format="png", dpi=PNG_DPI,
                                              metadata={"Software": None}))
    return SavedFigure(fig, pdf, png)


def styled(function: Callable[..., SavedFigure]) -> Callable[..., SavedFigure]:
    """Run a plot function under the house style, without touching global rcParams."""

    @wraps(function)
    def inner(*args: Any, **kwargs: Any) -> SavedFigure:
        with mpl.rc_context(STYLE):
            return function(*args, **kwargs)

    return inner


# --------------------------------------------------------------------------- axes helpers


def integer_layers(ax: Axes, n_layers: int) -> None:
    """Integer ticks for layers 1..n_layers on the x axis."""
    ax.set_xlim(0.5, n_layers + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=3))


def rank_axis(ax: Axes, top: float) -> None:
    """Symmetric-log y axis so rank 0 (top-1) is drawable: linear in [0, 1], log above."""
    ax.set_yscale("symlog", linthresh=1, linscale=0.5)
    top = max(10.0, 2 * top)  # headroom above the highest band
    decades = int(np.floor(np.log10(top)))
    ax.set_ylim(-0.05, top)
    ax.yaxis.set_major_locator(FixedLocator([0] + [10**k for k in range(decades + 1)]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(_rank_tick))


def _rank_tick(value: float, _position: int) -> str:
    return f"{value:,.0f}" if value < 1e5 else f"$10^{{{np.log10(value):.0f}}}$"


def _draw_summary(ax: Axes, summary: pd.DataFrame, x: Callable[[np.ndarray], np.ndarray],
                  label: Callable[[str, int], str], band: bool = True, **line_kw: Any) -> None:
    """One line (and CI band) per group of a :func:`~memrecall.stats.layer_summary` frame."""
    for group in group_order(summary["group"]):
        rows = summary[summary["group"] == group].sort_values("layer")
        xs, color = x(rows["layer"].to_numpy()), group_color(group)
        ax.plot(xs, rows["mean"], color=color, label=label(group, int(rows["n"].iloc[0])),
                gid=group, lw=1.6, **line_kw)
        if band:
            ax.fill_between(xs, rows["lo"], rows["hi"], color=color, alpha=0.2, lw=0)


def _n_label(group: str, n: int) -> str:
    return f"{group} (n={n})"


def _statistic(summary: pd.DataFrame) -> str:
    values = summary["statistic"].unique() if "statistic" in summary else ["mean"]
    return str(values[0]) if len(values) else "mean"


def _split_line(axes: Sequence[Axes], split_layer: float | None) -> None:
    if split_layer is None:
        return
    for ax in axes:
        ax.axvline(split_layer, color="0.3", ls="--", lw=1)
    # Keep the label inside the axes' width when the line is near an edge.
    low, high = axes[0].get_xlim()
    where = (split_layer - low) / (high - low)
    align = "center" if 0.3 < where < 0.7 else ("left" if where <= 0.3 else "right")
    shift = {"center": 0, "left": -4, "right": 4}[align]
    axes[0].annotate(SPLIT_LABEL, xy=(split_layer, 1), xycoords=("data", "axes fraction"),
                     xytext=(shift, 3), textcoords="offset points", ha=align, va="bottom",
                     fontsize=8, color="0.3")


def _bottom_legend(fig: Figure, handles: Sequence[Any], ncols: int = 3) -> None:
    """Legend under the panels, where it hides no data."""
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), ncols))


# --------------------------------------------------------------------------- figures


def _layerwise(summary_prob: pd.DataFrame, summary_rank: pd.DataFrame, path: str | Path,
               title: str, split_layer: float | None, subject: str) -> SavedFigure:
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    n_layers = int(max(summary_prob["layer"].max(), summary_rank["layer"].max())) + 1
    _draw_summary(top, summary_prob, to_display_layer, _n_label)
    _draw_summary(bottom, summary_rank, to_display_layer, _n_label)
    top.set_ylabel(f"probability of {subject}\n({_statistic(summary_prob)}, 95% CI)")
    top.set_ylim(bottom=0)
    bottom.set_ylabel(f"rank of {subject}\n({_statistic(summary_rank)}; 0 = top-1)")
    rank_axis(bottom, float(summary_rank["hi"].max()))
    bottom.set_xlabel(f"layer (block output, 1–{n_layers})")
    integer_layers(bottom, n_layers)
    _split_line([top, bottom], split_layer)
    fig.suptitle(title)
    _bottom_legend(fig, top.get_legend_handles_labels()[0])
    return save_figure(fig, path)


@styled
def plot_layerwise(summary_prob: pd.DataFrame, summary_rank: pd.DataFrame, path: str | Path,
                   title: str, split_layer: float | None = None) -> SavedFigure:
    """Draw the paper's main figure: probability (top) and rank (bottom) of the prediction.

    Args:
        summary_prob: :func:`~memrecall.stats.layer_summary` of ``pred_prob``.
        summary_rank: :func:`~memrecall.stats.layer_summary` of ``pred_rank``.
        path: output path without suffix (``.pdf`` and ``.png`` are written).
        title: names the model (and "smoke test: random weights" for tiny models).
        split_layer: 1-based layer for a dashed "Candidate Promotion | Confidence Boosting" line
            (e.g. :func:`~memrecall.report.split_layer`); None for no line.

    Returns:
        The saved figure.

    """
    return _layerwise(summary_prob, summary_rank, path, title, split_layer, "final prediction")


@styled
def plot_target_layerwise(summary_prob: pd.DataFrame, summary_rank: pd.DataFrame,
                          path: str | Path, title: str,
                          split_layer: float | None = None) -> SavedFigure:
    """As :func:`plot_layerwise`, for the target token (``target_prob`` / ``target_rank``)."""
    return _layerwise(summary_prob, summary_rank, path, title, split_layer, "target token")


def _ecdf(ax: Axes, values: np.ndarray, **kwargs: Any) -> None:
    xs = np.sort(values)
    ax.step(np.concatenate([[xs[0]], xs]), np.arange(len(xs) + 1) / len(xs), where="post",
            **kwargs)


@styled
def plot_promotion(per_example_df: pd.DataFrame, path: str | Path, title: str) -> SavedFigure:
    """Distributions of promotion layer (ECDF) and confidence boost (box plot) by group.

    Args:
        per_example_df: :func:`~memrecall.stats.per_example_table` output (``group``,
            ``promotion_layer``, ``confidence_boost``, ``n_layers``).
        path: output path without suffix.
        title: names the model.

    Returns:
        The saved figure.

    """
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    groups = group_order(per_example_df["group"])
    n_layers = int(per_example_df["n_layers"].max())
    boosts = []
    for group in groups:
        rows = per_example_df[per_example_df["group"] == group]
        _ecdf(left, to_display_layer(rows["promotion_layer"].to_numpy()),
              color=group_color(group), gid=group, label=_n_label(group, len(rows)), lw=1.6)
        boosts.append(rows["confidence_boost"].to_numpy())
    left.set_xlabel(f"promotion layer (1–{n_layers}; from here on the prediction stays top-1)")
    left.set_ylabel("fraction of examples promoted\nat or before this layer")
    integer_layers(left, n_layers)
    left.set_ylim(0, 1.02)
    left.legend(loc="upper left")
    box = right.boxplot(boosts, tick_labels=groups, patch_artist=True, showfliers=False,
                        widths=0.6, medianprops={"color": "black"})
    for patch, group in zip(box["boxes"], groups, strict=True):
        patch.set(facecolor=group_color(group), alpha=0.7, gid=group)
    right.set_ylabel("confidence boost\n(probability, last − promotion layer)")
    right.tick_params(axis="x", rotation=20)
    fig.suptitle(title)
    return save_figure(fig, path)


@styled
def plot_cross_model(summary_prob: Mapping[str, pd.DataFrame],
                     summary_rank: Mapping[str, pd.DataFrame], path: str | Path,
                     title: str) -> SavedFigure:
    """Prediction probability and rank against normalised depth, several models overlaid.

    Colour is the group (as everywhere), line style the model. No CI bands: too many lines.

    Args:
        summary_prob: model name -> :func:`~memrecall.stats.layer_summary` of ``pred_prob``.
        summary_rank: model name -> the same of ``pred_rank`` (same models).
        path: output path without suffix.
        title: names the models or profile.

    Returns:
        The saved figure.

    """
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    models = list(summary_prob)
    styles = {m: MODEL_LINESTYLES[i % len(MODEL_LINESTYLES)] for i, m in enumerate(models)}
    highest, groups = 1.0, []
    for model in models:
        depth = normalised_depth(int(summary_prob[model]["layer"].max()) + 1)

        def x(layers: np.ndarray, depth: np.ndarray = depth) -> np.ndarray:
            return depth[layers]

        for ax, summary in ((top, summary_prob[model]), (bottom, summary_rank[model])):
            _draw_summary(ax, summary, x, lambda g, n: g, band=False, ls=styles[model])
        highest = max(highest, float(summary_rank[model]["mean"].max()))
        groups += list(summary_prob[model]["group"])
    top.set_ylabel(f"probability of final prediction\n({_statistic(summary_prob[models[0]])})")
    top.set_ylim(bottom=0)
    bottom.set_ylabel("rank of final prediction\n(geometric mean; 0 = top-1)")
    rank_axis(bottom, highest)
    bottom.set_xlabel("relative depth (layer / number of layers)")
    bottom.set_xlim(0, 1.02)
    # Two legend columns, groups (colour) then models (line style), padded to equal length.
    colour = [Line2D([], [], color=group_color(g), lw=2, label=g) for g in group_order(groups)]
    style = [Line2D([], [], color="0.3", ls=styles[m], label=m) for m in models]
    rows = max(len(colour), len(style))
    blank = Line2D([], [], alpha=0, label=" ")
    fig.suptitle(title)
    _bottom_legend(fig, [*colour, *[blank] * (rows - len(colour)), *style,
                         *[blank] * (rows - len(style))], ncols=2)
    return save_figure(fig, path)


def _annotate_cells(ax: Axes, values: np.ndarray, fmt: str, cmap: Any, norm: Any) -> None:
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            red, green, blue, _ = cmap(norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")


@styled
def plot_bars(frame: pd.DataFrame, path: str | Path, title: str, *, x: str, y: str,
              hue: str | None = None, ylabel: str, xlabel: str | None = None,
              value_fmt: str | None = "{:.0f}") -> SavedFigure:
    """Draw grouped bars, e.g. memorized % (``y``) by source (``x``) per model (``hue``).

    Hue values that are groups get their :data:`GROUP_COLORS`; others take Okabe–Ito colours in
    order of appearance.

    Args:
        frame: long frame, one row per bar.
        path: output path without suffix.
        title: what is counted, over which models.
        x: column of the categories along the x axis.
        y: column of the bar heights.
        hue: column distinguishing bars within a category (None: one bar per category).
        ylabel: y axis label with units (e.g. "memorized idioms (%)").
        xlabel: x axis label (default: ``x``).
        value_fmt: format of the value written above each bar (None: none).

    Returns:
        The saved figure.

    """
    categories = list(dict.fromkeys(frame[x]))
    hues = list(dict.fromkeys(frame[hue])) if hue else [None]
    spare = iter(list(OKABE_ITO.values()) * 2)
    colors = {h: GROUP_COLORS.get(str(h)) or next(spare) for h in hues}
    fig = Figure(figsize=(min(10.0, max(5.0, 2.0 + 0.5 * len(categories) * len(hues))), 3.6),
                 layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(hues)
    for k, h in enumerate(hues):
        rows = frame if h is None else frame[frame[hue] == h]
        heights = rows.set_index(x)[y].reindex(categories).to_numpy(dtype=np.float64)
        bars = ax.bar(np.arange(len(categories)) - 0.4 + width * (k + 0.5), heights, width,
                      color=colors[h], label=None if h is None else str(h), gid=str(h))
        if value_fmt:
            ax.bar_label(bars, [value_fmt.format(v) if np.isfinite(v) else "" for v in heights],
                         fontsize=7, padding=1)
    labels = [str(c) for c in categories]
    long_labels = max(map(len, labels)) * len(labels) > 40
    ax.set_xticks(np.arange(len(categories)), labels, rotation=25 if long_labels else 0,
                  ha="right" if long_labels else "center",
                  rotation_mode="anchor" if long_labels else "default")
    ax.grid(axis="x", visible=False)
    if not (frame[y].to_numpy(dtype=np.float64) < 0).any():
        ax.set_ylim(bottom=0)  # counts and percentages: no negative axis, even when all are 0
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel or x)
    if hue:
        ax.legend(title=hue, loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title(title)
    return save_figure(fig, path)


@styled
def plot_heatmaps(panels: Mapping[str, Mapping[str, pd.DataFrame]], path: str | Path,
                  title: str, *, cbar_label: str = "predictions changed (%)",
                  index_base: int = 0, xlabel: str = "end layer", ylabel: str = "start layer",
                  vmin: float | None = 0.0, vmax: float | None = 100.0, cmap: str = "viridis",
                  annotate: bool | None = None, fmt: str = ".0f",
                  symlog: float | None = None) -> SavedFigure:
    """Small multiples of start-layer x end-layer heatmaps on one shared colour scale.

    Args:
        panels: row label -> column label -> matrix (index = start layer, columns = end layer),
            e.g. :func:`memrecall.interventions.window_panels` (rows = k, columns = groups).
            Rows may have different columns; missing panels stay empty.
        path: output path without suffix.
        title: names the model and the intervention.
        cbar_label: the colour bar's label, with units.
        index_base: 0 if the matrices' layer labels are 0-based (shown +1), 1 if 1-based.
        xlabel: x axis label (bottom row).
        ylabel: y axis label (left column).
        vmin: colour scale minimum (None: from the data).
        vmax: colour scale maximum (None: from the data).
        cmap: a perceptually uniform, colour-blind-safe colour map name.
        annotate: write values in cells; default when every panel has at most 144 cells.
        fmt: format of annotated values.
        symlog: a symmetric-log colour scale, linear within ``±symlog`` (for heavy-tailed
            values such as rank changes); None: linear.

    Returns:
        The saved figure.

    """
    rows = list(panels)
    columns = list(dict.fromkeys(c for r in rows for c in panels[r]))
    if not rows or not columns:
        raise ValueError("no panels to draw")
    matrices = [m for r in rows for m in panels[r].values()]
    size = max(max(m.shape) for m in matrices)
    values = np.concatenate([m.to_numpy(dtype=np.float64).ravel() for m in matrices])
    finite = values[np.isfinite(values)]
    low = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    high = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    high = high if high > low else low + 1
    norm = (mpl.colors.SymLogNorm(symlog, vmin=low, vmax=high) if symlog
            else mpl.colors.Normalize(low, high))
    colour_map = mpl.colormaps[cmap]
    side = min(3.4, max(2.2, 0.14 * size + 1.0))
    fig = Figure(figsize=(side * len(columns) + 1.2, side * len(rows) + 0.8),
                 layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(columns), squeeze=False))
    write = annotate if annotate is not None else size * size <= 144

    def label(layer: Any) -> str:
        return str(to_display_layer(int(layer)) if index_base == 0 else int(layer))

    step = max(1, int(np.ceil(size / 10)))
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            ax.grid(False)
            matrix = panels[row].get(column)
            if matrix is None:
                ax.set_axis_off()
                continue
            data = matrix.to_numpy(dtype=np.float64)
            ax.imshow(np.ma.masked_invalid(data), cmap=colour_map, norm=norm, aspect="equal",
                      origin="upper")
            ticks_x = list(range(0, data.shape[1], step))
            ticks_y = list(range(0, data.shape[0], step))
            ax.set_xticks(ticks_x, [label(matrix.columns[t]) for t in ticks_x])
            ax.set_yticks(ticks_y, [label(matrix.index[t]) for t in ticks_y])
            if write:
                _annotate_cells(ax, data, fmt, colour_map, norm)
            ax.set_title(f"{column}\n{row}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(f"{xlabel} (1-based)")
            if j == 0:
                ax.set_ylabel(f"{ylabel} (1-based)")
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=colour_map)
    fig.colorbar(mappable, ax=axes, label=cbar_label, shrink=0.8)
    fig.suptitle(title)
    return save_figure(fig, path)


CONTROL_LINESTYLES = {"dominant": "-", "random": "--", "non_dominant": ":"}
"""The line style of each knockout control, the same in every figure."""

CONTROL_LABELS = {"dominant": "k dominant knocked out", "random": "k random knocked out",
                  "non_dominant": "all but the k dominant knocked out"}


@styled
def plot_knockout_lines(profile: pd.DataFrame, path: str | Path, title: str, *,
                        value: str = "changed_pct",
                        ylabel: str = "predictions changed (%)",
                        controls: Sequence[str] | None = None,
                        window: int = 1) -> SavedFigure:
    """Knockout effect against start layer: one panel per k, colour = group, style = control.

    Args:
        profile: :func:`memrecall.interventions.layer_profile` rows (``group``, ``control``,
            ``k``, ``n_probes``, ``value`` and the 0-based ``start_layer``, shown 1-based; a
            ``layer`` column instead is taken as already 1-based).
        path: output path without suffix.
        title: names the model.
        value: the column on the y axis.
        ylabel: its label, with units.
        controls: which controls to draw, in legend order (default: all present).
        window: the window size the rows are for (for the x label).

    Returns:
        The saved figure.

    """
    frame = profile if "group" in profile.columns else profile.assign(group="all probes")
    if "start_layer" in frame.columns:
        frame = frame.assign(layer=to_display_layer(frame["start_layer"]))
    present = list(dict.fromkeys(frame["control"]))
    controls = [c for c in (controls or present) if c in present]
    ks = sorted(frame["k"].unique())
    n_layers = int(frame["layer"].max())
    fig = Figure(figsize=(min(4.2 * len(ks), 12.0), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(ks), sharey=True, squeeze=False)[0])
    groups = group_order(frame["group"])
    for ax, k in zip(axes, ks, strict=True):
        for group in groups:
            for control in controls:
                rows = frame[(frame["group"] == group) & (frame["control"] == control)
                             & (frame["k"] == k)].sort_values("layer")
                if len(rows):
                    ax.plot(rows["layer"], rows[value], color=group_color(group),
                            ls=CONTROL_LINESTYLES.get(control, "-."), marker=".", ms=4,
                            lw=1.4, gid=f"{group}|{control}")
        ax.set_title(f"k = {int(k)} neurons per layer")
        span = f"{window}-layer windows" if window > 1 else "one layer"
        ax.set_xlabel(f"start layer (1-based; {span} knocked out)")
        integer_layers(ax, n_layers)
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel(ylabel)
    sizes = frame.groupby("group")["n_probes"].max()
    handles = [Line2D([], [], color=group_color(g), lw=2, label=_n_label(g, int(sizes[g])))
               for g in groups]
    handles += [Line2D([], [], color="0.3", ls=CONTROL_LINESTYLES.get(c, "-."),
                       label=CONTROL_LABELS.get(c, c)) for c in controls]
    fig.suptitle(title)
    _bottom_legend(fig, handles, ncols=3)
    return save_figure(fig, path)
