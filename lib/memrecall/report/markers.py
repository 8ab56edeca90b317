"""Generated blocks in a Markdown text, each between its two markers.

A block opens with ``<!-- generated:NAME -->`` and closes with ``<!-- /generated:NAME -->``.
:func:`replace_blocks` swaps each block's content and keeps every character outside the markers;
a marker that is missing, duplicated, unbalanced or names an unknown block raises
:class:`MarkerError` naming the block and its line. README's result blocks use it
(:mod:`memrecall.report.readme`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MarkerError", "block_spans", "replace_blocks"]

_MARKER = re.compile(r"<!-- (/?)generated:(\S*) -->")


class MarkerError(ValueError):
    """README's generated-block markers are missing, duplicated, unbalanced or unknown."""

    def __init__(self, block: str, message: str) -> None:
        super().__init__(message)
        self.block = block


def block_spans(text: str, source: str) -> dict[str, tuple[int, int]]:
    """Block name -> (start, end) of its content (between its two markers), in text order.

    Args:
        text: a Markdown text.
        source: the file's name, for messages.

    Raises:
        MarkerError: a block opened inside another, opened twice, closed without being opened
            or never closed (the message names the block and the line).
    """
    spans: dict[str, tuple[int, int]] = {}
    lines: dict[str, int] = {}
    open_name: str | None = None
    open_end = 0
    for match in _MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if not closing and open_name is not None:
            raise MarkerError(open_name, f"{source}: generated block '{open_name}' (line "
                              f"{lines[open_name]}) is not closed before '{name}' opens "
                              f"(line {line})")
        if not closing and name in spans:
            raise MarkerError(name, f"{source}: generated block '{name}' appears twice (lines "
                              f"{lines[name]} and {line})")
        if not closing:
            open_name, open_end, lines[name] = name, match.end(), line
        elif open_name != name:
            raise MarkerError(name, f"{source}: closing marker of generated block '{name}' "
                              f"(line {line}) has no opening marker before it")
        else:
            spans[name], open_name = (open_end, match.start()), None
    if open_name is not None:
        raise MarkerError(open_name, f"{source}: generated block '{open_name}' (line "
                          f"{lines[open_name]}) has no closing marker "
                          f"'<!-- /generated:{open_name} -->'")
    return spans


def replace_blocks(text: str, contents: Mapping[str, str], source: str = "README.md") -> str:
    """``text`` with each block's content replaced; everything outside the markers kept.

    Args:
        text: the README.
        contents: block name -> Markdown; every name must have one block in ``text``, and every
            block of ``text`` a name here.
        source: the file's name, for messages.

    Raises:
        MarkerError: a marker missing, duplicated or unbalanced, or a block unknown here (the
            message names the block and the line).
    """
    spans = block_spans(text, source)
    for name in contents:
        if name not in spans:
            raise MarkerError(name, f"{source} has no generated block '{name}': put "
                              f"'<!-- generated:{name} -->' and '<!-- /generated:{name} -->' "
                              "where it goes")
    for name in spans:
        if name not in contents:
            raise MarkerError(name, f"{source}: unknown generated block '{name}' (known: "
                              f"{', '.join(contents)})")
    out, done = [], 0
    for name, (start, end) in sorted(spans.items(), key=lambda item: item[1]):
        out += [text[done:start], "\n", contents[name].strip("\n"), "\n"]
        done = end
    return "".join([*out, text[done:]])
