"""The knockout figure that has no heatmap form: the paper's Figure 7 line beside ours.

The heatmaps (Figures 3, 8, 9) are :func:`memrecall.plots.plot_heatmaps` of
:func:`memrecall.knockout_report.beside_paper_panels`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .plots import MODEL_LINESTYLES, OKABE_ITO, SavedFigure, group_color, save_figure, styled

__all__ = ["PAPER_LINE_LABEL", "plot_depth_lines"]

PAPER_LINE_LABEL = "paper: GPT-2 medium (digitized)"


@styled
def plot_depth_lines(lines: pd.DataFrame, paper_line: pd.DataFrame | None, path: str | Path,
                     title: str, *, group: str = "memorized",
                     ylabel: str = "predictions changed (%)") -> SavedFigure:
    """One line per model against relative depth, with its interval band, and the paper's line.

    Args:
        lines: :func:`memrecall.knockout_report.depth_lines` (``model, depth, value, lo, hi``).
        paper_line: :func:`memrecall.knockout_report.paper_depth_line` (``depth, value``), drawn
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
