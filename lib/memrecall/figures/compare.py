"""Two trajectories side by side in one picture, on one layer axis (two texts or two models).

:class:`Comparison` holds two :class:`~memrecall.figures.trajectory.Trajectory` views and draws
them as one figure: each its top-k table and its rank and probability curves, every panel sharing
the y axis (layer 1 at the top; a model with fewer layers leaves the rows below its output empty),
so layer *n* of one sits beside layer *n* of the other.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from .style import PNG_DPI
from .trajectory import Trajectory, draw_panels, drawing

__all__ = ["Comparison"]


@dataclass(frozen=True)
class Comparison:
    """Two (or more) views drawn side by side with one layer axis."""

    views: tuple[Trajectory, ...]

    def __init__(self, views: Sequence[Trajectory]) -> None:
        if len(views) < 2:
            raise ValueError(f"a comparison needs two views, got {len(views)}")
        object.__setattr__(self, "views", tuple(views))

    @property
    def n_layers(self) -> int:
        """The layer axis's length: the largest model's layer count."""
        return max(view.n_layers for view in self.views)

    @property
    def title(self) -> str:
        """What the picture compares, in one line."""
        return "  vs  ".join(f"{v.model}: {v.text!r}" for v in self.views)

    def frame(self) -> pd.DataFrame:
        """The per-layer tables of every view, stacked (``model``, ``text``, ``layer`` per row)."""
        return pd.concat([view.frame() for view in self.views], ignore_index=True)

    def figure(self) -> Figure:
        """The picture: the views left to right, all panels on one layer axis."""
        with drawing():
            return self._draw()

    def png(self) -> bytes:
        """The picture as PNG bytes."""
        buffer = io.BytesIO()
        with drawing():
            self._draw().savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def _draw(self) -> Figure:
        widths = [1.25 * view.top_ids.shape[1] + 4.4 for view in self.views]
        figure = Figure(figsize=(sum(widths), 1.6 + 0.24 * self.n_layers), layout="constrained")
        grid = figure.add_gridspec(1, len(self.views), width_ratios=widths)
        share = None
        for i, view in enumerate(self.views):
            sub = figure.add_subfigure(grid[i])
            axes = draw_panels(sub, sub.add_gridspec(1, 1)[0], view, self.n_layers, share=share)
            share = share or axes[0]
            sub.legend(*axes[-1].get_legend_handles_labels(), loc="outside lower center",
                       ncols=1)
            sub.suptitle(view.title, fontsize=9, x=0.01, ha="left", parse_math=False)
        return figure
