"""Generic charts: grouped bars and annotated heatmaps (start x end windows, counts).

Every function takes a ``path``, saves PDF and PNG and returns the saved figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..report.tables import to_display_layer
from .style import (
    GROUP_COLORS,
    OKABE_ITO,
    SavedFigure,
    save_figure,
    styled,
)

__all__ = ["annotate_cells", "plot_bars", "plot_heatmaps"]


def annotate_cells(ax: Axes, values: np.ndarray, fmt: str, cmap: Any, norm: Any) -> None:
    """Write each finite value in its cell, white on dark colours and black on light ones."""
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
                annotate_cells(ax, data, fmt, colour_map, norm)
            ax.set_title(f"{column}\n{row}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(f"{xlabel} (1-based)")
            if j == 0:
                ax.set_ylabel(f"{ylabel} (1-based)")
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=colour_map)
    fig.colorbar(mappable, ax=axes, label=cbar_label, shrink=0.8)
    fig.suptitle(title)
    return save_figure(fig, path)
