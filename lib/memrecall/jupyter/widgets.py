"""The JupyterLab explorer: type an idiom (or any text), pick a model and a lens, see its layers.

This module is the notebooks' entry point; the explorer lives in small modules beside it:
:mod:`.explorer` (the logic), :mod:`.suggest` (the suggestion ranking), :mod:`.search_box`
(the search box and the kept keys), :mod:`.controls` (the ipywidgets front), :mod:`.export`
(PNG, PDF and CSV).

* :class:`Explorer` (from :mod:`.explorer`): models, lenses and texts; ``show``, ``compare``,
  ``suggest``; ``Explorer.widget()`` the controls.
* :func:`idiom_explorer`: the widget, or, when the notebook runs unattended
  (``interactive=False``: papermill, ``make reproduce``), a :class:`Note` for the reader of the
  rendered copy, who has no kernel to drive a widget.
* :func:`example_trajectories`: a few memorized and non-memorized idioms of one model, the
  static view that rendered notebooks show (PNG pictures survive an untrusted or sanitised view).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..figures.trajectory import Trajectory, trajectory
from ..models import LM
from .explorer import Explorer

__all__ = ["BATCH_NOTE", "Explorer", "Note", "example_trajectories", "idiom_explorer"]

BATCH_NOTE = ("This is a rendered copy (run by `make reproduce`, no kernel attached), so the "
              "interactive explorer is not here; the pictures above are its static view. To type "
              "any idiom and switch models, run notebooks/03_layerwise_projection.ipynb itself "
              "in JupyterLab (`make lab`).")


@dataclass(frozen=True)
class Note:
    """A line of text that a notebook shows as it is (no quotes), in place of a widget."""

    text: str

    def __repr__(self) -> str:
        return self.text


def idiom_explorer(models: Sequence[LM | str], texts: Sequence[str], *, interactive: bool = True,
                   figures_dir: str | Path | None = None, results_dir: str | Path | None = None,
                   **options: Any) -> Any:
    """The explorer widget over ``texts``, or a :class:`Note` when no one can use it.

    Args:
        models: as in :class:`Explorer`.
        texts: as in :class:`Explorer`.
        interactive: whether someone can type and click (the notebooks' ``interactive``
            parameter; ``make reproduce`` passes False). When False no widget is built and no
            model is loaded.
        figures_dir: where "export" writes the picture as PNG and PDF (the notebook's
            ``run.figures_dir``); None hides export.
        results_dir: where "export" writes the per-layer table as CSV (``run.results_dir``).
        **options: the other arguments of :class:`Explorer` (``lenses``, ``results``, ``k``,
            ``device``, ``loader``).

    Returns:
        :meth:`Explorer.widget`, or :data:`BATCH_NOTE` as a :class:`Note`.
    """
    if not models:
        raise ValueError("no models to explore")
    if not interactive:
        return Note(BATCH_NOTE)
    return Explorer(models, texts, **options).widget(figures_dir, results_dir)


def example_trajectories(lm: LM, results: pd.DataFrame, n_memorized: int = 2, n_other: int = 1,
                         k: int = 5) -> list[Trajectory]:
    """The first memorized and non-memorized texts of ``results`` through ``lm``, for display.

    Args:
        lm: the loaded model the results belong to.
        results: ``text`` and ``is_memorized`` columns (e.g. ``pipeline.idiom_results``).
        n_memorized: how many memorized texts (the first ones).
        n_other: how many non-memorized texts (the first ones).
        k: tokens per layer.

    Returns:
        One :class:`~memrecall.figures.trajectory.Trajectory` per text, memorized first (fewer when
        a
        group is short); each shows as a PNG picture in a notebook.
    """
    memorized = results["is_memorized"].astype(bool)
    chosen = pd.concat([results[memorized].head(n_memorized), results[~memorized].head(n_other)])
    return [trajectory(lm, text, k=k) for text in chosen["text"]]  # IdioMem texts: "memorized"
