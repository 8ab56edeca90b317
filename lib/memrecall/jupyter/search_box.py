"""The explorer's search box: type, see the matching idioms, arrow to one, Enter.

:class:`SearchBox` is an anywidget (front end in ``search_box.js`` and ``.css``). The browser
sends what is typed (``query``, after a 60 ms pause) and Enter (``typed`` and the highlighted
suggestion, if any); the kernel ranks the suggestions (:func:`memrecall.jupyter.suggest.suggest`)
and decides what Enter shows (:func:`~memrecall.jupyter.suggest.resolve`). The same front end keeps
the explorer's keys from JupyterLab (a ``keydown`` listener on the container with the CSS class
``memrecall-explorer`` that stops every key but Ctrl/Cmd/Alt shortcuts). Its logic is testable
without a browser: set :attr:`query`, call :meth:`submit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .suggest import resolve, suggest

__all__ = ["EXPLORER_CLASS", "SearchBox"]

EXPLORER_CLASS = "memrecall-explorer"
_HERE = Path(__file__).parent


class SearchBox(anywidget.AnyWidget):
    """A text box with a ranked suggestion list over ``texts``; ``on_submit(text)`` on Enter.

    Traits: ``value`` (the text shown, set on Enter), ``query`` (what is typed), ``suggestions``
    (best first), ``count`` (``"3 idioms match"``), ``description``, ``placeholder``.
    """

    _esm = _HERE / "search_box.js"
    _css = _HERE / "search_box.css"
    value = traitlets.Unicode("").tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    suggestions = traitlets.List(traitlets.Unicode()).tag(sync=True)
    count = traitlets.Unicode("").tag(sync=True)
    description = traitlets.Unicode("idiom or text").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)

    def __init__(self, texts: Sequence[str] = (), *, limit: int = 12,
                 on_submit: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts = list(texts)
        self.limit = limit
        self.on_submit = on_submit
        self.observe(self._on_query, names="query")
        self.on_msg(self._on_message)

    def set_texts(self, texts: Sequence[str]) -> None:
        """Offer ``texts`` from now on (and re-rank the current query)."""
        self.texts = list(texts)
        self._on_query(None)

    def submit(self, typed: str, highlighted: str | None = None) -> str:
        """Enter on ``typed`` with ``highlighted`` picked: show the resolved text; returns it."""
        text = resolve(self.texts, typed, highlighted)
        self.value = text
        self.query = text
        self.suggestions = []  # the query's change re-ranked it; Enter closes the list
        self.count = ""
        if self.on_submit is not None:
            self.on_submit(text)
        return text

    def _on_query(self, _change: Any) -> None:
        found = suggest(self.texts, self.query, self.limit)
        exact = len(found.shown) == 1 and found.shown[0] == self.query.strip()
        self.suggestions = [] if exact else list(found.shown)
        self.count = "" if not self.query.strip() else found.count_label

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "enter":
            self.submit(str(content.get("typed", "")), content.get("highlighted") or None)
