"""Figures: every function takes a ``path``, saves PDF and PNG, and leaves no open figure.

:mod:`.style` (palette, saving, axes), :mod:`.projection` (the paper's layer-wise figures),
:mod:`.charts` (bars, heatmaps), :mod:`.knockouts`, :mod:`.attention` (notebook 07),
:mod:`.lenses`, :mod:`.paper` (ours beside
the paper's), :mod:`.trajectory` (one text through the lens; imported by itself, as the
explorer does).
"""

from .attention import plot_attention_curves, plot_attention_heatmap
from .charts import plot_bars, plot_heatmaps
from .knockouts import (
    PAPER_LINE_LABEL,
    plot_depth_lines,
    plot_knockout_lines,
)
from .lenses import LENS_STYLES, plot_lens_kl, plot_tuned_training
from .paper import PAPER_LABEL, plot_clusters_beside_paper, plot_curves_beside_paper
from .projection import plot_cross_model, plot_layerwise, plot_promotion, plot_target_layerwise
from .style import (
    GROUP_COLORS,
    MODEL_LINESTYLES,
    OKABE_ITO,
    PNG_DPI,
    SPLIT_LABEL,
    STYLE,
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

__all__ = [
    "GROUP_COLORS",
    "LENS_STYLES",
    "MODEL_LINESTYLES",
    "OKABE_ITO",
    "PAPER_LABEL",
    "PAPER_LINE_LABEL",
    "PNG_DPI",
    "SPLIT_LABEL",
    "STYLE",
    "SavedFigure",
    "bottom_legend",
    "draw_summary",
    "group_color",
    "integer_layers",
    "n_label",
    "plot_attention_curves",
    "plot_attention_heatmap",
    "plot_bars",
    "plot_clusters_beside_paper",
    "plot_cross_model",
    "plot_curves_beside_paper",
    "plot_depth_lines",
    "plot_knockout_lines",
    "plot_heatmaps",
    "plot_layerwise",
    "plot_lens_kl",
    "plot_promotion",
    "plot_target_layerwise",
    "plot_tuned_training",
    "rank_axis",
    "save_figure",
    "split_line",
    "statistic_name",
    "styled",
]
