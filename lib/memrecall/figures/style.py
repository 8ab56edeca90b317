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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    MaxNLocator,
    NullLocator,
)

from .._io import atomic_write_all
from ..analysis.projection import group_order

__all__ = [
    "GROUP_COLORS",
    "MODEL_LINESTYLES",
    "OKABE_ITO",
    "PNG_DPI",
    "SPLIT_LABEL",
    "STYLE",
    "SavedFigure",
    "bottom_legend",
    "draw_summary",
    "group_color",
    "integer_layers",
    "n_label",
    "rank_axis",
    "save_figure",
    "split_line",
    "statistic_name",
    "styled",
]

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

    The pair is written all or nothing (:func:`~memrecall._io.atomic_write_all`): both go to
    temp files first and are renamed into place only when both were written, so a reader or a
    concurrent run never sees half a figure, and a failed or interrupted save keeps the old PDF
    and PNG together (never a PDF of one run beside the PNG of another).
    """
    base = Path(path)
    if base.suffix.lower() in (".pdf", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = base.with_name(base.name + ".pdf"), base.with_name(base.name + ".png")
    # No timestamps in the files: a rerun that draws the same figure writes the same bytes.
    atomic_write_all({
        pdf: lambda temp: fig.savefig(temp, format="pdf", metadata={"CreationDate": None}),
        png: lambda temp: fig.savefig(temp, format="png", dpi=PNG_DPI,
                                      metadata={"Software": None}),
    })
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


def draw_summary(ax: Axes, summary: pd.DataFrame, x: Callable[[np.ndarray], np.ndarray],
                  label: Callable[[str, int], str], band: bool = True, **line_kw: Any) -> None:
    """One line (and CI band) per group of a :func:`~memrecall.analysis.layer_summary` frame."""
    for group in group_order(summary["group"]):
        rows = summary[summary["group"] == group].sort_values("layer")
        xs, color = x(rows["layer"].to_numpy()), group_color(group)
        ax.plot(xs, rows["mean"], color=color, label=label(group, int(rows["n"].iloc[0])),
                gid=group, lw=1.6, **line_kw)
        if band:
            ax.fill_between(xs, rows["lo"], rows["hi"], color=color, alpha=0.2, lw=0)


def n_label(group: str, n: int) -> str:
    """A legend entry: the group and its size."""
    return f"{group} (n={n})"


def statistic_name(summary: pd.DataFrame) -> str:
    """The statistic of a :func:`~memrecall.analysis.layer_summary` frame (``mean`` by default)."""
    values = summary["statistic"].unique() if "statistic" in summary else ["mean"]
    return str(values[0]) if len(values) else "mean"


def split_line(axes: Sequence[Axes], split_layer: float | None) -> None:
    """The paper's dashed "Candidate Promotion | Confidence Boosting" divider (None: none)."""
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


def bottom_legend(fig: Figure, handles: Sequence[Any], ncols: int = 3) -> None:
    """Legend under the panels, where it hides no data."""
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), ncols))
