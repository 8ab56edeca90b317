"""The group analyses that notebooks 03 (idioms, Wikipedia) and 04 (facts, idioms) both draw.

Each function runs one section for every model of a run and returns what the notebook shows, so
the two notebooks differ only in their groups and file names. Figures are saved under
``run.figures_dir`` as ``<stem>_<model slug>`` (per model) or ``<stem>`` (across models).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..analysis.projection import layer_summary, median_by_model, summaries_by_model
from ..figures.projection import (
    plot_cross_model,
    plot_layerwise,
    plot_promotion,
    plot_target_layerwise,
)
from ..figures.style import SavedFigure
from ..report.tables import medians_table, split_layer
from .runs import Settings

__all__ = ["cross_model", "cross_model_title", "layerwise_figures", "promotion_by_model"]


def layerwise_figures(labelled: Mapping[str, pd.DataFrame], tables: Mapping[str, pd.DataFrame],
                      run: Settings, stem: str, column: str = "pred",
                      split_group: str | None = "memorized") -> list[SavedFigure]:
    """The paper's main figure per model: probability and rank of ``column`` at every layer.

    Args:
        labelled: model -> labelled results (:func:`memrecall.analysis.label_groups`).
        tables: model -> per-example table (:func:`memrecall.analysis.per_example_tables`).
        run: the run (figure folder, titles).
        stem: file-name stem, e.g. ``"03_layerwise"``.
        column: ``"pred"`` (the final prediction) or ``"target"``.
        split_group: the group whose median promotion layer is drawn as a dashed line; ``None``
            for no line.
    """
    draw = plot_layerwise if column == "pred" else plot_target_layerwise
    figures = []
    for name, frame in labelled.items():
        split = None if split_group is None else split_layer(tables[name], split_group)
        figures.append(draw(layer_summary(frame, f"{column}_prob"),
                            layer_summary(frame, f"{column}_rank"),
                            run.figures_dir / f"{stem}_{run.slug(name)}", run.title(name),
                            split_layer=split))
    return figures


def promotion_by_model(tables: Mapping[str, pd.DataFrame], run: Settings,
                       stem: str) -> dict[str, tuple[pd.DataFrame, SavedFigure]]:
    """Per model: the group medians table and the promotion-layer / boost figure."""
    return {name: (medians_table(table),
                   plot_promotion(table, run.figures_dir / f"{stem}_{run.slug(name)}",
                                        run.title(name)))
            for name, table in tables.items()}


def cross_model_title(run: Settings, what: str = "") -> str:
    """A title for a figure across the run's models, saying so when they are the smoke models."""
    title = f"{what}{', ' if what else ''}{len(run.models)} models, {run.profile} profile"
    return title + (" (smoke test: tiny random models)" if run.is_smoke else "")


def cross_model(labelled: Mapping[str, pd.DataFrame], tables: Mapping[str, pd.DataFrame],
                run: Settings, stem: str, title: str) -> tuple[SavedFigure, pd.DataFrame]:
    """Every model on normalised depth, and each group's median promotion depth per model."""
    figure = plot_cross_model(summaries_by_model(labelled, "pred_prob"),
                                    summaries_by_model(labelled, "pred_rank"),
                                    run.figures_dir / stem, title)
    return figure, median_by_model(tables, "promotion_depth")
