"""The explorer's ipywidgets front: the controls of an :class:`~.explorer.Explorer`.

One box (CSS class ``memrecall-explorer``, whose keys stay with its controls, see
:mod:`memrecall.jupyter.search_box`) holds, top to bottom:

* the pickers: model, lens (shown when the model has fitted lenses), "memorized only" (shown when
  the model's results are known), how many top tokens per layer;
* the search box (:class:`~memrecall.jupyter.search_box.SearchBox`: suggestions, arrows, Enter);
* compare and track: another model and/or another text drawn beside the first on one layer axis,
  and a token of one's own followed like the target;
* export (shown when the notebook passed its folders): PNG and PDF to ``figures_dir``, the
  per-layer CSV to ``results_dir``, the written paths shown under the button;
* a status line (loading, the verdict, or what to do about an error), and the picture, in an
  area of fixed height that scrolls (a 30-layer model is taller than the screen).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..data import DataFormatError
from ..figures.compare import Comparison
from ..figures.trajectory import Trajectory
from .explorer import Explorer
from .export import export
from .search_box import EXPLORER_CLASS, SearchBox

__all__ = ["NO_COMPARE", "ONE_WORD_HELP", "ExplorerControls", "verdict"]

NO_COMPARE = "(none)"
ONE_WORD_HELP = ("Type two words or more: the last word is the target, which the model must "
                 "predict from the words before it (e.g. “once in a blue moon”).")
TOP_K = (1, 3, 5, 10, 20)
PICTURE_HEIGHT = "640px"


def verdict(view: Trajectory | Comparison) -> str:
    """One line (per view) on what the model does with the text."""
    if isinstance(view, Comparison):
        return " | ".join(verdict(v) for v in view.views)
    word = view.verdict
    if view.is_memorized:
        head = f"✓ {word}: {view.model} predicts the target {view.target_label}"
    else:
        head = (f"✗ {word}: {view.model} predicts {view.pred_label}, not the target "
                f"{view.target_label} (its rank at the output: "
                f"{int(view.curves['target_rank'].iloc[-1])})")
    return (f"{head}. The prediction is top-1 from layer {view.promotion_layer} of "
            f"{view.n_layers} on ({view.lens}).")


class ExplorerControls:
    """The controls of ``explorer`` and the callbacks between them; :attr:`box` is the widget.

    Args:
        explorer: the logic.
        figures_dir: where export writes the picture (PNG, PDF); None hides export.
        results_dir: where export writes the per-layer CSV (default ``figures_dir``).
    """

    def __init__(self, explorer: Explorer, figures_dir: str | Path | None = None,
                 results_dir: str | Path | None = None) -> None:
        import ipywidgets as widgets

        self.explorer = explorer
        self.figures_dir = None if figures_dir is None else Path(figures_dir)
        self.results_dir = self.figures_dir if results_dir is None else Path(results_dir)
        self.view: Trajectory | Comparison | None = None
        model = explorer.default_model
        wide = {"description_width": "initial"}
        self.model = widgets.Dropdown(options=explorer.models, value=model, description="model",
                                      style=wide)
        self.lens = widgets.Dropdown(options=explorer.lens_names(model), description="lens",
                                     style=wide)
        self.memorized_only = widgets.Checkbox(value=False, description="memorized only",
                                               indent=False, style=wide)
        self.top_k = widgets.Dropdown(options=TOP_K, value=explorer.k if explorer.k in TOP_K
                                      else 5, description="top-k", style=wide,
                                      layout={"width": "120px"})
        self.search = SearchBox(explorer.options(model), value=explorer.first_text(model) or "",
                                placeholder="type to see the matching idioms (arrows, Enter), "
                                            "or any text of two words or more",
                                on_submit=lambda _text: self.draw())
        self.compare_model = widgets.Dropdown(options=[NO_COMPARE, *explorer.models],
                                              value=NO_COMPARE, description="compare with model",
                                              style=wide)
        self.compare_text = widgets.Text(description="and/or text", continuous_update=False,
                                         placeholder="another text (Enter)", style=wide,
                                         layout={"width": "340px"})
        self.track = widgets.Text(description="track token", continuous_update=False,
                                  placeholder="e.g. ␣moon (Enter)", style=wide,
                                  layout={"width": "230px"})
        self.export_button = widgets.Button(description="export PNG, PDF, CSV", icon="download",
                                            tooltip="write the picture and its per-layer table")
        self.export_button.layout.width = "210px"
        self.saved = widgets.HTML()
        self.status = widgets.HTML()
        self.status.add_class("memrecall-status")  # what a test waits on: no "…" = drawn
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.picture = widgets.Box([self.image], layout={"max_height": PICTURE_HEIGHT,
                                                         "overflow": "auto", "display": "block"})
        export_row = widgets.HBox([self.export_button, self.saved])
        export_row.layout.display = "none" if self.figures_dir is None else ""
        self.box = widgets.VBox([
            widgets.HBox([self.model, self.lens, self.memorized_only, self.top_k]),
            self.search,
            widgets.HBox([self.compare_model, self.compare_text, self.track]),
            export_row, self.status, self.picture])
        self.box.add_class(EXPLORER_CLASS)
        self._updating = False  # True while one change sets other controls: draw once, after
        self._show_pickers()
        self.model.observe(self._on_model, names="value")
        self.memorized_only.observe(self._on_filter, names="value")
        for control in (self.lens, self.top_k, self.compare_model, self.compare_text, self.track):
            control.observe(self._on_view, names="value")
        self.export_button.on_click(lambda _button: self.export())
        self.draw()

    def _show_pickers(self) -> None:
        model = self.model.value
        self.model.layout.display = "" if len(self.explorer.models) > 1 else "none"
        self.compare_model.layout.display = "" if len(self.explorer.models) > 1 else "none"
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
        self.search.set_texts(self.explorer.options(self.model.value, self.memorized_only.value))
        self.draw()

    def _on_view(self, _change: Any) -> None:
        if not self._updating:
            self.draw()

    def _clear(self, message: str) -> None:
        self.view = None
        self.image.value = b""
        self.export_button.disabled = True
        self.status.value = message

    def draw(self) -> None:
        """Show the current text(s) through the current model(s) (or say what is wrong)."""
        text = self.search.value.strip()
        if not text:
            self._clear("Type an idiom, or any text of two words or more.")
            return
        model, other = self.model.value, self.compare_model.value
        other_text = self.compare_text.value.strip()
        models = [model] + ([other] if other != NO_COMPARE else [])
        waiting = [name for name in models if not self.explorer.is_loaded(name)]
        if waiting:
            self.status.value = (f"<i>loading {html.escape(', '.join(waiting))} (first use: "
                                 "about 15 s)…</i>")
        else:
            self.status.value = f"<i>reading {html.escape(text)!r} through {model}…</i>"
        options = {"k": self.top_k.value, "track": self.track.value.strip() or None}
        try:
            if other != NO_COMPARE or other_text:
                second = (other_text or text, model if other == NO_COMPARE else other)
                view: Trajectory | Comparison = self.explorer.compare(
                    (text, model), second, self.lens.value, **options)
            else:
                view = self.explorer.show(text, model, self.lens.value, **options)
        except DataFormatError:
            self._clear(f"<b>Cannot split this text.</b> {html.escape(ONE_WORD_HELP)}")
            return
        except ValueError as error:  # a tracked token that makes no token
            self._clear(f"<b>Cannot draw this.</b> {html.escape(str(error))}")
            return
        self.view = view
        self.image.value = view.png()
        self.export_button.disabled = False
        self.saved.value = ""
        self.status.value = html.escape(verdict(view))

    def export(self) -> list[Path]:
        """Write the current picture (PNG, PDF) and its table (CSV); returns their paths."""
        if self.view is None or self.figures_dir is None or self.results_dir is None:
            return []
        written = list(export(self.view, self.figures_dir, self.results_dir).paths)
        self.saved.value = "saved: " + ", ".join(f"<code>{html.escape(str(path))}</code>"
                                                 for path in written)
        return written
