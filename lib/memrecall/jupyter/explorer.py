"""The explorer's logic, without a browser: models, lenses and texts, and one text drawn.

:class:`Explorer` holds the models to choose from (loaded ones, or registry names loaded on first
use, one at a time), the texts to offer, the lenses of each model (the logit lens always; fitted
lenses when given), and which texts each model memorizes. :meth:`Explorer.show` returns a
:class:`~memrecall.figures.trajectory.Trajectory` (the top-k table and the prediction's, the
target's and a tracked token's rank and probability at every layer); :meth:`Explorer.compare`
two of them on one layer axis; :meth:`Explorer.suggest` the idioms matching what was typed.
The ipywidgets front is :mod:`memrecall.jupyter.controls`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..figures.compare import Comparison
from ..figures.trajectory import Trajectory, trajectory
from ..lenses import LogitLens
from ..models import LM, load
from .suggest import Suggestions, resolve, suggest

__all__ = ["Explorer"]


class Explorer:
    """Models, lenses and texts to explore; :meth:`show` draws one text through one model.

    Args:
        models: loaded models, or registry names (hub ids, local paths) that are loaded on first
            use; at most one model loaded that way is kept (a model given loaded is always kept).
            Picked by :attr:`LM.name <memrecall.models.LM>` for a loaded one.
        texts: the texts the picker offers (e.g. IdioMem's idioms); any other text works too.
        lenses: fitted lenses per model name (``{model: {lens name: lens}}``, each lens with
            ``transform(hidden)``, e.g. ``memrecall.lenses.TunedLens``); the logit lens
            (:class:`~memrecall.lenses.LogitLens`) is always offered first.
        results: per model name, its results on ``texts`` (``text`` and ``is_memorized``
            columns, e.g. ``pipeline.idiom_results``): enables "memorized only".
        k: tokens per layer in the table.
        device: where models loaded by name go (None: CUDA when available).
        loader: how a name becomes a model (default :func:`memrecall.load` on ``device``).
    """

    def __init__(self, models: Sequence[LM | str], texts: Sequence[str] = (), *,
                 lenses: Mapping[str, Mapping[str, Any]] | None = None,
                 results: Mapping[str, pd.DataFrame] | None = None, k: int = 5,
                 device: str | None = None, loader: Callable[[str], LM] | None = None) -> None:
        if not models:
            raise ValueError("no models to explore")
        self._given = {m.name: m for m in models if isinstance(m, LM)}
        self.models = [m.name if isinstance(m, LM) else str(m) for m in models]
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"a model is listed twice: {self.models}")
        self.texts = [str(text) for text in texts]
        self._known_texts = {" ".join(text.split()).lower() for text in self.texts}
        self.lenses = {name: dict(lenses.get(name, {})) if lenses else {} for name in self.models}
        for name, fitted in self.lenses.items():
            if LogitLens.label in fitted:
                raise ValueError(f"{name}: {LogitLens.label!r} is always offered; "
                                 "name lenses otherwise")
        self.results = dict(results or {})
        self.k = k
        self._loader = loader or (lambda name: load(name, device=device))
        self._on_demand: tuple[str, LM] | None = None  # the last model loaded by name

    @property
    def default_model(self) -> str:
        """The model shown first: the first one given loaded, else the first name."""
        return next(iter(self._given), self.models[0])

    def lens_names(self, model: str) -> list[str]:
        """The lenses offered for ``model``: the logit lens, then its fitted lenses."""
        return [LogitLens.label, *self.lenses[self._known(model)]]

    def memorized(self, model: str) -> list[str]:
        """The texts ``model`` memorizes, in :attr:`texts` order (needs ``results``)."""
        frame = self.results.get(self._known(model))
        if frame is None:
            raise KeyError(f"no results for {model!r}: pass results={{{model!r}: frame}}")
        memorized = set(frame.loc[frame["is_memorized"].astype(bool), "text"])
        return [text for text in self.texts if text in memorized]

    def options(self, model: str, memorized_only: bool = False) -> list[str]:
        """The texts to offer for ``model``: all of :attr:`texts`, or its memorized ones."""
        return self.memorized(model) if memorized_only else list(self.texts)

    def first_text(self, model: str) -> str | None:
        """A text to show first: one that ``model`` memorizes if known, else the first text."""
        if self._known(model) in self.results:
            memorized = self.memorized(model)
            if memorized:
                return memorized[0]
        return self.texts[0] if self.texts else None

    def model(self, name: str) -> LM:
        """The model called ``name``, loading it (and releasing the last one loaded) if needed."""
        name = self._known(name)
        if name in self._given:
            return self._given[name]
        if self._on_demand is None or self._on_demand[0] != name:
            self._on_demand = None  # release the previous one before loading the next
            gc.collect()
            self._on_demand = (name, self._loader(name))
        return self._on_demand[1]

    def is_loaded(self, name: str) -> bool:
        """Whether :meth:`model` returns ``name`` at once (given loaded, or the last one loaded)."""
        name = self._known(name)
        return name in self._given or (self._on_demand is not None
                                       and self._on_demand[0] == name)

    def is_idiom(self, text: str) -> bool:
        """Whether ``text`` is one of :attr:`texts` (its verdict then says "memorized")."""
        return " ".join(text.split()).lower() in self._known_texts

    def suggest(self, query: str, limit: int = 12) -> Suggestions:
        """The texts matching ``query``, best first (:func:`memrecall.jupyter.suggest.suggest`)."""
        return suggest(self.texts, query, limit)

    def resolve(self, typed: str, highlighted: str | None = None) -> str:
        """The text Enter shows (:func:`memrecall.jupyter.suggest.resolve`)."""
        return resolve(self.texts, typed, highlighted)

    def show(self, text: str, model: str | None = None, lens: str = LogitLens.label, *,
             k: int | None = None, track: str | None = None) -> Trajectory:
        """``text`` through ``model`` (default :attr:`default_model`) read by ``lens``.

        Args:
            text: any text of two words or more.
            model: one of :attr:`models`.
            lens: one of :meth:`lens_names`.
            k: tokens per layer (default :attr:`k`).
            track: a token of one's own to follow (``" moon"``), or None.

        Raises:
            memrecall.data.DataFormatError: ``text`` has fewer than two words.
            KeyError: an unknown model or lens.
        """
        name = self._known(model or self.default_model)
        if lens != LogitLens.label and lens not in self.lenses[name]:
            raise KeyError(f"no lens {lens!r} for {name}; choose from {self.lens_names(name)}")
        fitted = None if lens == LogitLens.label else self.lenses[name][lens]
        return trajectory(self.model(name), text, k=k or self.k, lens=fitted, lens_name=lens,
                          track=track or None, idiom=self.is_idiom(text))

    def compare(self, first: tuple[str, str], second: tuple[str, str],
                lens: str = LogitLens.label, *, k: int | None = None,
                track: str | None = None) -> Comparison:
        """Two ``(text, model)`` pairs side by side on one layer axis.

        Each is read by ``lens`` where its model has that lens, else by the logit lens. Two
        models that are both loaded by name are loaded in turn (the explorer keeps one).
        """
        views = [self.show(text, model, lens if lens in self.lens_names(model) else
                           LogitLens.label, k=k, track=track) for text, model in (first, second)]
        return Comparison(views)

    def widget(self, figures_dir: str | Path | None = None,
               results_dir: str | Path | None = None) -> Any:
        """The ipywidgets explorer (:class:`memrecall.jupyter.controls.ExplorerControls`).

        Args:
            figures_dir: where "export" writes the picture (PNG, PDF); None: no export.
            results_dir: where it writes the per-layer table (CSV).

        Returns:
            An ``ipywidgets.VBox``; its controls are its ``controls`` attribute. It shows the
            first text at once.
        """
        from .controls import ExplorerControls

        controls = ExplorerControls(self, figures_dir, results_dir)
        controls.box.controls = controls
        return controls.box

    def _known(self, model: str) -> str:
        if model not in self.models:
            raise KeyError(f"unknown model {model!r}; choose from {self.models}")
        return model
