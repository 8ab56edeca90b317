"""The knockout figure that has no heatmap form: the paper's Figure 7 line beside ours.

The heatmaps (Figures 3, 8, 9) are :func:`memrecall.figures.plot_heatmaps` of
:func:`memrecall.report.beside_paper_panels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..analysis.projection import group_order
from ..interventions import control as control_entry
from ..report.tables import to_display_layer
from .style import (
    MODEL_LINESTYLES,
    OKABE_ITO,
    SavedFigure,
    bottom_legend,
    group_color,
    integer_layers,
    n_label,
    save_figure,
    styled,
)

__all__ = ["PAPER_LINE_LABEL", "plot_depth_lines", "plot_knockout_lines"]

PAPER_LINE_LABEL = "paper: GPT-2 medium (digitized)"


@styled
def plot_depth_lines(lines: pd.DataFrame, paper_line: pd.DataFrame | None, path: str | Path,
                     title: str, *, group: str = "memorized",
                     ylabel: str = "predictions changed (%)") -> SavedFigure:
    """One line per model against relative depth, with its interval band, and the paper's line.

    Args:
        lines: :func:`memrecall.report.depth_lines` (``model, depth, value, lo, hi``).
        paper_line: :func:`memrecall.report.paper_depth_line` (``depth, value``), drawn
            in black and labelled as digitized; None to leave it out.
        path: output path without suffix.
        title: says which control and window size.
        group: our group (its colour).
        ylabel: the read-out with units.

    Returns:
        The saved figure.
    """
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.subplots()
    colour = group_color(group)
    for i, (model, rows) in enumerate(lines.groupby("model", sort=False)):
        rows = rows.sort_values("depth")
        ax.fill_between(rows["depth"], rows["lo"], rows["hi"], color=colour, alpha=0.15, lw=0)
        ax.plot(rows["depth"], rows["value"], color=colour, marker=".", ms=4, lw=1.4,
                ls=MODEL_LINESTYLES[i % len(MODEL_LINESTYLES)], label=f"{model}, {group}",
                gid=model)
    if paper_line is not None:
        ax.plot(paper_line["depth"], paper_line["value"], color=OKABE_ITO["black"], marker="x",
                ms=4, lw=1.2, label=PAPER_LINE_LABEL, gid="paper")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("relative depth of the window's first layer (layer / number of layers)")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper right")
    fig.suptitle(title)
    return save_figure(fig, path)


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
                            ls=control_entry(control).linestyle, marker=".", ms=4,
                            lw=1.4, gid=f"{group}|{control}")
        ax.set_title(f"k = {int(k)} neurons per layer")
        span = f"{window}-layer windows" if window > 1 else "one layer"
        ax.set_xlabel(f"start layer (1-based; {span} knocked out)")
        integer_layers(ax, n_layers)
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel(ylabel)
    sizes = frame.groupby("group")["n_probes"].max()
    handles = [Line2D([], [], color=group_color(g), lw=2, label=n_label(g, int(sizes[g])))
               for g in groups]
    handles += [Line2D([], [], color="0.3", ls=control_entry(c).linestyle,
                       label=control_entry(c).label) for c in controls]
    fig.suptitle(title)
    bottom_legend(fig, handles, ncols=3)
    return save_figure(fig, path)
