"""The JupyterLab explorer: type an idiom (or any text), pick a model and a lens, see its layers.

* :class:`Explorer`: the explorer's logic, usable without a browser: the models to choose from
  (loaded ones, or registry names loaded on first use, one at a time), the texts to offer, the
  lenses of each model (the logit lens always; fitted lenses when given), and which texts each
  model memorizes. ``Explorer.show(text, model, lens)`` returns a
  :class:`~memrecall.figures.trajectory.Trajectory`: the top-k table and the prediction's and
  target's
  rank and probability at every layer, drawn as one picture.
* :meth:`Explorer.widget`: the ipywidgets front. A ``Combobox`` (type to filter the idioms; any
  text of two words or more works too, Enter to show it), a model picker, a lens picker (shown
  when a model has fitted lenses) and a "memorized only" filter; the picture shows as a PNG.
* :func:`idiom_explorer`: the widget, or, when the notebook runs unattended
  (``interactive=False``: papermill, ``make reproduce``), a :class:`Note` for the reader of the
  rendered copy, who has no kernel to drive a widget.
* :func:`example_trajectories`: a few memorized and non-memorized idioms of one model, the
  static view that rendered notebooks show (PNG pictures survive an untrusted or sanitised view).
"""

from __future__ import annotations

import gc
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_write, slug
from ..data import DataFormatError
from ..figures.trajectory import Trajectory, trajectory
from ..lenses import LogitLens
from ..models import LM, load

__all__ = ["BATCH_NOTE", "KEYS_CLASS", "KEYS_GUARD_JS", "Explorer", "Note", "example_trajectories",
           "idiom_explorer"]

BATCH_NOTE = ("This is a rendered copy (run by `make reproduce`, no kernel attached), so the "
              "interactive explorer is not here; the pictures above are its static view. To type "
              "any idiom and switch models, run notebooks/03_layerwise_projection.ipynb itself "
              "in JupyterLab (`make lab`).")


KEYS_CLASS = "memrecall-explorer"
"""The explorer's CSS class: keys pressed inside it are kept from JupyterLab's shortcuts."""

# JupyterLab (4.x) matches command shortcuts in a keydown listener on the document, in the bubble
# phase. A listener on the explorer's box, which the event reaches first, stops it there: the
# focused control has ArrowUp, `a`, `b`, `x`... and the notebook never sees them. Ctrl/Cmd/Alt
# combinations (Ctrl+S) still pass. Boxes drawn later are found by a MutationObserver.
KEYS_GUARD_JS = f"""
(function () {{
  function guard(box) {{
    if (box.__memrecallKeys) {{ return; }}
    box.__memrecallKeys = true;
    box.addEventListener("keydown", function (event) {{
      if (!(event.ctrlKey || event.metaKey || event.altKey)) {{ event.stopPropagation(); }}
    }});
  }}
  function scan() {{ document.querySelectorAll(".{KEYS_CLASS}").forEach(guard); }}
  scan();
  if (!window.__memrecallKeysObserver) {{
    window.__memrecallKeysObserver = new MutationObserver(scan);
    window.__memrecallKeysObserver.observe(document.body, {{childList: true, subtree: true}});
  }}
}})();
"""


@dataclass(frozen=True)
class Note:
    """A line of text that a notebook shows as it is (no quotes), in place of a widget."""

    text: str

    def __repr__(self) -> str:
        return self.text


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
        figures_dir, results_dir: where :meth:`export` writes the picture (PNG, PDF) and its
            per-layer table (CSV); the notebooks pass ``run.figures_dir`` and
            ``run.results_dir`` (``figures|results/interactive/<profile>/`` in JupyterLab).
    """

    def __init__(self, models: Sequence[LM | str], texts: Sequence[str] = (), *,
                 lenses: Mapping[str, Mapping[str, Any]] | None = None,
                 results: Mapping[str, pd.DataFrame] | None = None, k: int = 5,
                 device: str | None = None, loader: Callable[[str], LM] | None = None,
                 figures_dir: str | Path = "figures/interactive",
                 results_dir: str | Path = "results/interactive") -> None:
        if not models:
            raise ValueError("no models to explore")
        self._given = {m.name: m for m in models if isinstance(m, LM)}
        self.models = [m.name if isinstance(m, LM) else str(m) for m in models]
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"a model is listed twice: {self.models}")
        self.texts = [str(text) for text in texts]
        self._text_set = set(self.texts)
        self.lenses = {name: dict(lenses.get(name, {})) if lenses else {} for name in self.models}
        for name, fitted in self.lenses.items():
            if LogitLens.label in fitted:
                raise ValueError(f"{name}: {LogitLens.label!r} is always offered; "
                                 "name lenses otherwise")
        self.results = dict(results or {})
        self.k = k
        self.figures_dir, self.results_dir = Path(figures_dir), Path(results_dir)
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
        """Whether :meth:`model` returns ``name`` without loading it first."""
        name = self._known(name)
        return name in self._given or (self._on_demand is not None
                                       and self._on_demand[0] == name)

    def export(self, view: Trajectory) -> list[Path]:
        """Export ``view``: the picture and its table; returns the paths written.

        PNG and PDF under :attr:`figures_dir`, the per-layer table (CSV) under
        :attr:`results_dir`; each file whole or not at all.
        """
        stem = "explorer_" + "_".join(slug(part, 40) for part in (view.model, view.text,
                                                                  view.lens))
        png = view.save(self.figures_dir / stem)
        table = self.results_dir / f"{stem}.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(table, lambda out: view.layer_table().to_csv(out, index=False))
        return [png, png.with_suffix(".pdf"), table]

    def show(self, text: str, model: str | None = None, lens: str = LogitLens.label) -> Trajectory:
        """``text`` through ``model`` (default :attr:`default_model`) read by ``lens``.

        Raises:
            memrecall.data.DataFormatError: ``text`` has fewer than two words.
            KeyError: an unknown model or lens.
        """
        name = self._known(model or self.default_model)
        if lens != LogitLens.label and lens not in self.lenses[name]:
            raise KeyError(f"no lens {lens!r} for {name}; choose from {self.lens_names(name)}")
        fitted = None if lens == LogitLens.label else self.lenses[name][lens]
        view = trajectory(self.model(name), text, k=self.k, lens=fitted, lens_name=lens)
        return replace(view, in_dataset=text.strip() in self._text_set)

    def widget(self) -> Any:
        """The ipywidgets explorer (see the module's docstring); shows the first text at once.

        Returns:
            An ``ipywidgets.VBox`` (class :data:`KEYS_CLASS`: keys pressed in it never reach
            the notebook's shortcuts): a row of controls (``.children[0]``: the model and lens
            dropdowns, the "memorized only" checkbox, "top k", the export button), the
            ``Combobox`` (``.children[1]``), a status line (``.children[2]``), the picture
            (``.children[3]``: a scrolling box holding an ``Image`` of PNG bytes) and the
            paths of the last export (``.children[4]``).
        """
        return _ExplorerWidget(self).box

    def _known(self, model: str) -> str:
        if model not in self.models:
            raise KeyError(f"unknown model {model!r}; choose from {self.models}")
        return model


class _ExplorerWidget:
    """The ipywidgets controls of an :class:`Explorer` and the callbacks between them."""

    def __init__(self, explorer: Explorer) -> None:
        import ipywidgets as widgets

        self.explorer = explorer
        model = explorer.default_model
        wide = {"description_width": "initial"}
        self.model = widgets.Dropdown(options=explorer.models, value=model, description="model",
                                      style=wide)
        self.lens = widgets.Dropdown(options=explorer.lens_names(model), description="lens",
                                     style=wide)
        self.memorized_only = widgets.Checkbox(value=False, description="memorized only",
                                               indent=False, style=wide)
        self.text = widgets.Combobox(
            value=explorer.first_text(model) or "", options=explorer.options(model),
            placeholder="type to filter the idioms, or any text; Enter shows it",
            description="idiom or text", ensure_option=False, continuous_update=False,
            layout={"width": "720px"}, style=wide)
        self.top_k = widgets.BoundedIntText(value=explorer.k, min=1, max=20, description="top k",
                                            layout={"width": "130px"}, style=wide)
        self.export = widgets.Button(description="export", icon="download",
                                     tooltip="write the picture (PNG, PDF) and its table (CSV)")
        self.status = widgets.HTML()
        self.saved = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        # a tall picture (30 layers) scrolls inside the explorer instead of the page
        frame = widgets.Box([self.image], layout={"max_height": "640px", "overflow": "auto"})
        self.box = widgets.VBox([widgets.HBox([self.model, self.lens, self.memorized_only,
                                               self.top_k, self.export]),
                                 self.text, self.status, frame, self.saved])
        self.box.add_class(KEYS_CLASS)
        from IPython.display import Javascript, display
        display(Javascript(KEYS_GUARD_JS))  # before the box is drawn; it watches for the box
        self._view: Trajectory | None = None
        self._updating = False  # True while one change sets other controls: draw once, after
        self._show_pickers()
        self.model.observe(self._on_model, names="value")
        self.memorized_only.observe(self._on_filter, names="value")
        self.lens.observe(self._on_view, names="value")
        self.text.observe(self._on_view, names="value")
        self.top_k.observe(self._on_k, names="value")
        self.export.on_click(self._on_export)
        self.draw()

    def _show_pickers(self) -> None:
        model = self.model.value
        self.model.layout.display = "" if len(self.explorer.models) > 1 else "none"
        self.lens.layout.display = "" if len(self.explorer.lens_names(model)) > 1 else "none"
        has_results = model in self.explorer.results
        self.memorized_only.layout.display = "" if has_results else "none"
        if not has_results:
            self.memorized_only.value = False

    def _on_model(self, _change: Any) -> None:
        self._updating = True
        try:
            self.lens.options = self.explorer.lens_names(self.model.value)  # logit lens first
            self._show_pickers()
        finally:
            self._updating = False
        self._on_filter(None)

    def _on_filter(self, _change: Any) -> None:
        if self._updating:
            return
        self.text.options = self.explorer.options(self.model.value, self.memorized_only.value)
        self.draw()

    def _on_view(self, _change: Any) -> None:
        if not self._updating:
            self.draw()

    def _on_k(self, _change: Any) -> None:
        self.explorer.k = self.top_k.value
        self.draw()

    def _on_export(self, _button: Any) -> None:
        if self._view is None:
            self.saved.value = "Nothing to export yet: show a text first."
            return
        paths = self.explorer.export(self._view)
        self.saved.value = "wrote " + ", ".join(f"<code>{html.escape(str(path))}</code>"
                                                 for path in paths)

    def draw(self) -> None:
        """Show the current text through the current model and lens (or say what is wrong)."""
        text = self.text.value.strip()
        if not text:
            self.status.value = "Type an idiom, or any text of two words or more."
            return
        model = self.model.value
        loading = ("" if self.explorer.is_loaded(model)
                   else f"loading {model} (first use: a few seconds to a minute), then ")
        self.status.value = f"<i>{loading}reading {html.escape(text)!r} through {model}…</i>"
        try:
            view = self.explorer.show(text, model, self.lens.value)
        except DataFormatError as error:
            self._view, self.image.value, self.saved.value = None, b"", ""
            self.status.value = f"<b>Cannot read this text:</b> {html.escape(_plain_error(error))}"
            return
        self._view, self.saved.value = view, ""
        self.status.value = html.escape(_verdict(view))
        self.image.value = view.png()


def _plain_error(error: DataFormatError) -> str:
    """The error without the row number of the batch it was checked in (a single text here)."""
    message = re.sub(r"^row \d+(?: \(index [^)]*\))?: ", "", str(error))
    if "one word" in message:
        message += ": type two words or more (the last word is the target)"
    return message


def _verdict(view: Trajectory) -> str:
    """One line on what the model does with the text."""
    if view.is_memorized:
        head = f"✓ {view.verdict}: {view.model} predicts the target {view.target_label}"
    else:
        head = (f"✗ {view.verdict}: {view.model} predicts {view.pred_label}, not the target "
                f"{view.target_label} (its rank at the output: "
                f"{int(view.curves['target_rank'].iloc[-1])})")
    return (f"{head}. The prediction is top-1 from layer {view.promotion_layer} of "
            f"{view.n_layers} on ({view.lens}).")


def idiom_explorer(models: Sequence[LM | str], texts: Sequence[str], *, interactive: bool = True,
                   **options: Any) -> Any:
    """The explorer widget over ``texts``, or a :class:`Note` when no one can use it.

    Args:
        models: as in :class:`Explorer`.
        texts: as in :class:`Explorer`.
        interactive: whether someone can type and click (the notebooks' ``interactive``
            parameter; ``make reproduce`` passes False). When False no widget is built and no
            model is loaded.
        **options: the other arguments of :class:`Explorer` (``lenses``, ``results``, ``k``,
            ``device``, ``loader``).

    Returns:
        :meth:`Explorer.widget`, or :data:`BATCH_NOTE` as a :class:`Note`.
    """
    if not models:
        raise ValueError("no models to explore")
    if not interactive:
        return Note(BATCH_NOTE)
    return Explorer(models, texts, **options).widget()


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
    return [trajectory(lm, text, k=k) for text in chosen["text"]]
