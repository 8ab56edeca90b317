"""Which idioms match what someone typed, best first, and what Enter on a fragment means.

* :func:`suggest`: the texts that match a query (case-insensitive): prefix matches first, then
  matches at the start of a later word, then any other substring; within each group in the
  order given. Returns the shown ones and how many matched in all.
* :func:`resolve`: the text that Enter shows: the highlighted suggestion when there is one; a
  typed fragment that starts one or more idioms (``"spill the"``) becomes the best match rather
  than a prompt/target split of the fragment itself; any other text is taken as typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Suggestions", "resolve", "suggest"]


@dataclass(frozen=True)
class Suggestions:
    """The matches of one query: ``shown`` (best first, at most ``limit``) of ``total``."""

    query: str
    shown: tuple[str, ...]
    total: int

    @property
    def count_label(self) -> str:
        """``"3 of 12 idioms match"`` (or ``"no idiom matches"``)."""
        if not self.total:
            return "no idiom matches"
        if len(self.shown) < self.total:
            return f"{len(self.shown)} of {self.total} idioms match"
        return "1 idiom matches" if self.total == 1 else f"{self.total} idioms match"


def _rank(text: str, query: str) -> int | None:
    """0: ``text`` starts with ``query``; 1: a later word does; 2: contains it; None: no match."""
    low = text.lower()
    if low.startswith(query):
        return 0
    at = low.find(query)
    if at < 0:
        return None
    while at >= 0:
        if not low[at - 1].isalnum():
            return 1
        at = low.find(query, at + 1)
    return 2


def suggest(texts: Sequence[str], query: str, limit: int = 12) -> Suggestions:
    """The texts matching ``query`` (whitespace-normalised, any case), best first.

    Args:
        texts: the texts to search (e.g. IdioMem's idioms), in the order ties keep.
        query: what was typed; empty or blank matches nothing.
        limit: how many to return (``total`` counts them all).
    """
    needle = " ".join(query.lower().split())
    if not needle:
        return Suggestions(query, (), 0)
    ranked = [(rank, i) for i, text in enumerate(texts)
              if (rank := _rank(" ".join(text.split()), needle)) is not None]
    ranked.sort()
    return Suggestions(query, tuple(texts[i] for _, i in ranked[:limit]), len(ranked))


def resolve(texts: Sequence[str], typed: str, highlighted: str | None = None) -> str:
    """The text to show when Enter is pressed on ``typed``.

    Args:
        texts: the known texts (idioms).
        typed: the box's content.
        highlighted: the suggestion picked with the arrow keys, if any (it wins).

    Returns:
        ``highlighted``; else the best idiom that ``typed`` is the start of (when ``typed`` is
        not itself a whole text); else ``typed`` stripped.
    """
    if highlighted:
        return highlighted
    text = " ".join(typed.split())
    if not text or text.lower() in {" ".join(t.split()).lower() for t in texts}:
        return text
    best = suggest(texts, text, limit=1)
    if best.shown and _rank(" ".join(best.shown[0].split()), text.lower()) == 0:
        return best.shown[0]
    return text
