"""Figures that put the paper's digitized curves beside ours.

The left column is the paper (its four models, or GPT-2 medium alone for facts and clusters),
marked "paper, digitized"; the right column is ours, drawn with the same statistic (the
*arithmetic* mean rank, the paper's unit), the same group colours (``plots.GROUP_COLORS``) and
relative depth on the x axis, so models of different depth line up. Ranks on a linear axis are
the paper's Figure 2; on a symmetric-log axis (``log_rank=True``) its Figure 6.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..analysis.projection import group_order
from .style import MODEL_LINESTYLES, SavedFigure, group_color, rank_axis, save_figure, styled

__all__ = ["PAPER_LABEL", "plot_clusters_beside_paper", "plot_curves_beside_paper"]

PAPER_LABEL = "paper (Haviv et al. 2023), digitized"


def _styles(models: list[str]) -> dict[str, str]:
    return {m: MODEL_LINESTYLES[i % len(MODEL_LINESTYLES)] for i, m in enumerate(models)}


def _draw(ax_prob: Axes, ax_rank: Axes, curves: Mapping[str, pd.DataFrame],
          color_of: Mapping[str, str], key: str) -> tuple[list[str], float]:
    """Draw each model's curves (line style) per ``key`` value (colour); return keys, top rank."""
    styles, keys, top = _styles(list(curves)), [], 1.0
    for model, frame in curves.items():
        for value in dict.fromkeys(frame[key]):
            rows = frame[frame[key] == value].sort_values("depth")
            kw = {"color": color_of[value], "ls": styles[model], "lw": 1.4, "gid": str(value)}
            ax_prob.plot(rows["depth"], rows["prob"], **kw)
            ax_rank.plot(rows["depth"], rows["rank"], **kw)
            top = max(top, float(rows["rank"].max()))
            keys.append(value)
    return list(dict.fromkeys(keys)), top


def _axes_labels(axes: np.ndarray, log_rank: bool, top: float) -> None:
    for column, ax in enumerate(axes[0]):
        ax.set_ylim(0, 1)
        if column == 0:
            ax.set_ylabel("probability of final prediction\n(mean)")
    for column, ax in enumerate(axes[1]):
        if log_rank:
            rank_axis(ax, top)
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("relative depth (layer / number of layers)")
        ax.set_xlim(0, 1.02)
        if column == 0:
            ax.set_ylabel(f"rank of final prediction\n(arithmetic mean{', log' if log_rank else ''}"
                          "; 0 = top-1)")


def _legend(fig: Figure, colors: Mapping[str, str], keys: list[str],
            model_styles: Mapping[str, str]) -> None:
    handles = [Line2D([], [], color=colors[k], lw=2, label=str(k)) for k in keys]
    handles += [Line2D([], [], color="0.3", ls=s, label=m) for m, s in model_styles.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))


def _by_model(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {m: part for m, part in frame.groupby("model", sort=False)}


@styled
def plot_curves_beside_paper(ours: Mapping[str, pd.DataFrame], paper_curves: pd.DataFrame,
                             path: str | Path, title: str, log_rank: bool = False) -> SavedFigure:
    """The paper's per-layer curves (left) beside ours (right), groups coloured alike.

    Args:
        ours: model name -> :func:`memrecall.analysis.mean_curves` (``group, depth, rank,
            prob``).
        paper_curves: :func:`memrecall.data.paper.figure2` or ``facts_curves``.
        path: output path without suffix.
        title: names our models (and says "smoke test" for tiny ones).
        log_rank: symmetric-log rank axis (the paper's Figure 6) instead of linear (Figure 2).

    Returns:
        The saved figure.
    """
    fig = Figure(figsize=(8.4, 5.6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)  # ranks differ with the vocabulary: own scales
    theirs = _by_model(paper_curves)
    ours_groups = [g for frame in ours.values() for g in frame["group"]]
    groups = group_order(list(paper_curves["group"]) + ours_groups)
    colors = {g: group_color(g) for g in groups}
    keys_paper, top_paper = _draw(axes[0, 0], axes[1, 0], theirs, colors, "group")
    keys_ours, top_ours = _draw(axes[0, 1], axes[1, 1], ours, colors, "group")
    _axes_labels(axes, log_rank, max(top_paper, top_ours))
    axes[0, 0].set_title(PAPER_LABEL)
    axes[0, 1].set_title("this reproduction")
    fig.suptitle(title)
    styles = {f"{m} (paper)": s for m, s in _styles(list(theirs)).items()}
    styles.update(_styles(list(ours)))
    _legend(fig, colors, group_order(keys_paper + keys_ours), styles)
    return save_figure(fig, path)


@styled
def plot_clusters_beside_paper(ours: pd.DataFrame, paper_clusters: pd.DataFrame,
                               path: str | Path, title: str) -> SavedFigure:
    """Figure 5: k-means clusters of memorized idioms, the paper's (left) beside ours (right).

    Args:
        ours: :func:`memrecall.analysis.cluster_curves` of one model.
        paper_clusters: :func:`memrecall.data.paper.clusters`.
        path: output path without suffix.
        title: names our model.

    Returns:
        The saved figure.
    """
    fig = Figure(figsize=(8.4, 5.6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    cmap = mpl.colormaps["viridis"]
    for column, frame in enumerate((paper_clusters, ours)):
        k = frame["cluster"].nunique()
        for cluster, rows in frame.groupby("cluster"):
            rows = rows.sort_values("depth")
            kw = {"color": cmap(cluster / max(1, k - 1) * 0.9), "lw": 1.4}
            size = int(rows["size"].iloc[0])
            axes[0, column].plot(rows["depth"], rows["prob"], label=f"{cluster} (n={size})", **kw)
            axes[1, column].plot(rows["depth"], rows["rank"], **kw)
        axes[0, column].axhline(0.5, color="0.5", ls=":", lw=1)
        axes[0, column].legend(title="cluster", ncols=2, fontsize=7)
    _axes_labels(axes, True, float(max(paper_clusters["rank"].max(), ours["rank"].max())))
    axes[0, 0].set_title(f"{PAPER_LABEL}: GPT-2 medium")
    axes[0, 1].set_title("this reproduction")
    fig.suptitle(title)
    return save_figure(fig, path)
