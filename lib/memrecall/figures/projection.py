"""The paper's layer-wise figures: probability and rank per layer, promotion, models on depth.

Every function takes a ``path``, saves PDF and PNG (:func:`memrecall.figures.save_figure`)
and returns the :class:`~memrecall.figures.SavedFigure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..analysis.projection import group_order, normalised_depth
from ..report.tables import to_display_layer
from .style import (
    MODEL_LINESTYLES,
    SavedFigure,
    bottom_legend,
    draw_summary,
    group_color,
    integer_layers,
    n_label,
    rank_axis,
    save_figure,
    split_line,
    statistic_name,
    styled,
)

__all__ = ["plot_cross_model", "plot_layerwise", "plot_promotion", "plot_target_layerwise"]


def _layerwise(summary_prob: pd.DataFrame, summary_rank: pd.DataFrame, path: str | Path,
               title: str, split_layer: float | None, subject: str) -> SavedFigure:
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    n_layers = int(max(summary_prob["layer"].max(), summary_rank["layer"].max())) + 1
    draw_summary(top, summary_prob, to_display_layer, n_label)
    draw_summary(bottom, summary_rank, to_display_layer, n_label)
    top.set_ylabel(f"probability of {subject}\n({statistic_name(summary_prob)}, 95% CI)")
    top.set_ylim(bottom=0)
    bottom.set_ylabel(f"rank of {subject}\n({statistic_name(summary_rank)}; 0 = top-1)")
    rank_axis(bottom, float(summary_rank["hi"].max()))
    bottom.set_xlabel(f"layer (block output, 1–{n_layers})")
    integer_layers(bottom, n_layers)
    split_line([top, bottom], split_layer)
    fig.suptitle(title)
    bottom_legend(fig, top.get_legend_handles_labels()[0])
    return save_figure(fig, path)


@styled
def plot_layerwise(summary_prob: pd.DataFrame, summary_rank: pd.DataFrame, path: str | Path,
                   title: str, split_layer: float | None = None) -> SavedFigure:
    """Draw the paper's main figure: probability (top) and rank (bottom) of the prediction.

    Args:
        summary_prob: :func:`~memrecall.analysis.layer_summary` of ``pred_prob``.
        summary_rank: :func:`~memrecall.analysis.layer_summary` of ``pred_rank``.
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
        per_example_df: :func:`~memrecall.analysis.per_example_table` output (``group``,
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
              color=group_color(group), gid=group, label=n_label(group, len(rows)), lw=1.6)
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
        summary_prob: model name -> :func:`~memrecall.analysis.layer_summary` of ``pred_prob``.
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
            draw_summary(ax, summary, x, lambda g, n: g, band=False, ls=styles[model])
        highest = max(highest, float(summary_rank[model]["mean"].max()))
        groups += list(summary_prob[model]["group"])
    top.set_ylabel(f"probability of final prediction\n({statistic_name(summary_prob[models[0]])})")
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
    bottom_legend(fig, [*colour, *[blank] * (rows - len(colour)), *style,
                         *[blank] * (rows - len(style))], ncols=2)
    return save_figure(fig, path)
