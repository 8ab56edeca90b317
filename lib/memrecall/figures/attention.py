"""Notebook 07's figures: where in the prompt and the depth a prediction reads its words from.

* :func:`plot_attention_curves`: the relative change of the prediction's probability over the
  window's first layer, one panel per (window size, source set), one line per group with its
  bootstrap band (the form of Geva et al. 2023's Figure 2);
* :func:`plot_attention_heatmap`: % of predictions changed, one panel per group, rows = source
  sets, columns = the window's first layer.

Both read :func:`memrecall.analysis.attention_table` rows (layers 1-based).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..analysis.projection import group_order
from .charts import annotate_cells
from .style import (
    SavedFigure,
    bottom_legend,
    group_color,
    integer_layers,
    n_label,
    save_figure,
    styled,
)

__all__ = ["plot_attention_curves", "plot_attention_heatmap"]


def _sources(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["sources"]))


@styled
def plot_attention_curves(table: pd.DataFrame, path: str | Path, title: str, *,
                          promotion: Mapping[str, float] | None = None) -> SavedFigure:
    """Relative probability change over the start layer: rows = window sizes, columns = sources.

    Args:
        table: one model's :func:`memrecall.analysis.attention_table` (1-based layers).
        path: output path without suffix.
        title: names the model.
        promotion: group -> median promotion layer (1-based), drawn as a dashed line in the
            group's colour (notebook 03's promotion; None: none).

    Returns:
        The saved figure.
    """
    windows = sorted(table["window"].unique())
    sources = _sources(table)
    groups = group_order(table["group"])
    n_layers = int(table["end_layer"].max())
    fig = Figure(figsize=(2.9 * len(sources) + 0.4, 2.6 * len(windows) + 0.9),
                 layout="constrained")
    axes = fig.subplots(len(windows), len(sources), sharex=True, sharey=True, squeeze=False)
    for i, window in enumerate(windows):
        for j, source in enumerate(sources):
            ax = axes[i, j]
            ax.axhline(0, color="0.6", lw=0.8)
            for group in groups:
                rows = table[(table["window"] == window) & (table["sources"] == source)
                             & (table["group"] == group)].sort_values("start_layer")
                if rows.empty:
                    continue
                colour = group_color(group)
                ax.fill_between(rows["start_layer"], rows["ci_low"], rows["ci_high"],
                                color=colour, alpha=0.15, lw=0)
                ax.plot(rows["start_layer"], rows["prob_change_rel_pct"], color=colour,
                        marker=".", ms=3, lw=1.3, gid=f"{window}|{source}|{group}")
            for group, layer in (promotion or {}).items():
                if np.isfinite(layer):
                    ax.axvline(layer, color=group_color(group), ls="--", lw=0.9)
            ax.set_title(f"{source} blocked, {window}-layer window{'s' if window > 1 else ''}",
                         fontsize=9)
            integer_layers(ax, n_layers)
            if i == len(windows) - 1:
                ax.set_xlabel("window's first layer (1-based)")
        axes[i, 0].set_ylabel("prediction's probability\nchange (% of clean)")
    sizes = table.groupby("group")["n_probes"].max()
    handles = [Line2D([], [], color=group_color(g), lw=2, label=n_label(g, int(sizes[g])))
               for g in groups]
    if promotion:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1,
                              label="median promotion layer (notebook 03)"))
    fig.suptitle(title)
    bottom_legend(fig, handles, ncols=4)
    return save_figure(fig, path)


@styled
def plot_attention_heatmap(table: pd.DataFrame, path: str | Path, title: str, *,
                           window: int = 1) -> SavedFigure:
    """% of predictions changed: one panel per group, rows = source sets, columns = start layer.

    Args:
        table: one model's :func:`memrecall.analysis.attention_table` (1-based layers).
        path: output path without suffix.
        title: names the model.
        window: the window size drawn.

    Returns:
        The saved figure.
    """
    rows = table[table["window"] == window]
    if rows.empty:
        raise ValueError(f"no rows with {window}-layer windows")
    groups = group_order(rows["group"])
    sources = _sources(rows)
    starts = sorted(rows["start_layer"].unique())
    norm, cmap = mpl.colors.Normalize(0, 100), mpl.colormaps["viridis"]
    width = min(0.3 * len(starts) + 1.2, 5.5)  # per panel: a 30-layer model stays readable
    fig = Figure(figsize=(width * len(groups) + 1.2, 0.45 * len(sources) + 1.9),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups), sharey=True, squeeze=False)[0])
    for ax, group in zip(axes, groups, strict=True):
        part = rows[rows["group"] == group]
        matrix = (part.pivot(index="sources", columns="start_layer", values="changed_pct")
                  .reindex(index=sources, columns=starts))
        data = matrix.to_numpy(np.float64)
        ax.grid(False)
        ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto")
        if data.size <= 160:
            annotate_cells(ax, data, ".0f", cmap, norm)
        step = max(1, int(np.ceil(len(starts) / 12)))
        ax.set_xticks(range(0, len(starts), step), [str(s) for s in starts[::step]])
        ax.set_yticks(range(len(sources)), sources)
        ax.set_title(n_label(group, int(part["n_probes"].max())), fontsize=9)
        ax.set_xlabel("window's first layer (1-based)")
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes,
                 label="predictions changed (%)", shrink=0.9)
    fig.suptitle(title)
    return save_figure(fig, path)
