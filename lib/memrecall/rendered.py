"""How a rendered notebook is stored: no progress bars, each figure once, compact PNGs.

A re-render's diff should be the science, not noise: :func:`tidy_rendered` drops the plain tqdm
updates from stderr (keeping every other line) and the progress-bar widgets a library's own
``tqdm.auto`` bars leave (the GGUF conversion's), with the widget state when no other widget is
left, coalesces streams, keeps one copy of each figure (no ``text/plain`` beside an image) and
re-encodes opaque PNGs with a 256-colour palette at the same size, deterministically.
``make reproduce`` applies it to every notebook it renders; ``python -m memrecall.rendered
notebooks/rendered/<profile>/*.ipynb`` re-tidies renders already made, without running them.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from PIL.Image import Image

__all__ = ["PROGRESS_UPDATE", "PROGRESS_WIDGET", "palette_png", "tidy_file", "tidy_files",
           "tidy_rendered"]

_CLOCK = r"-?(?:\d+:)?\d{2}:\d{2}"  # tqdm's [H:]MM:SS
_STATUS = rf"[^\r\n]*?\[{_CLOCK}(?:<(?:\?|{_CLOCK}))?, [^\]\r\n]*\]"  # ends in its timing
PROGRESS_UPDATE = re.compile(rf"\r{_STATUS} *\n?")
r"""One update of a plain tqdm bar: ``\r``, a status line ending in its timing bracket, padding."""
PROGRESS_WIDGET = re.compile(rf"{_STATUS} *")
"""The ``text/plain`` of a tqdm widget (``tqdm.auto`` in a kernel): one status line."""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def tidy_file(path: Path) -> None:
    """Rewrite the notebook at ``path`` as :func:`tidy_rendered` makes it."""
    import nbformat

    nbformat.write(tidy_rendered(nbformat.read(path, as_version=nbformat.NO_CONVERT)), path)


def tidy_rendered(notebook: NotebookNode) -> NotebookNode:
    r"""Strip the noise from an executed notebook's outputs, in place; returns ``notebook``.

    Per code cell, and applying it again changes nothing:

    - Progress bars go: every :data:`PROGRESS_UPDATE` (what plain tqdm writes: ``\r``, a status
      line ending in its ``[elapsed<remaining, rate]`` or ``[elapsed, rate]`` bracket, padding
      spaces, and the newline that ends a closed bar) is cut from the stderr text; anything else
      on stderr (warnings, log lines, tracebacks) stays verbatim, and an stderr output left with
      only whitespace is dropped.
    - Progress-bar widgets go: an output that is a widget view whose ``text/plain`` is one
      tqdm status line (:data:`PROGRESS_WIDGET`); when no widget view is left in the notebook,
      so does the saved widget state (``metadata.widgets``), which only those bars used.
    - Consecutive stream outputs of the same name become one (stdout's text is kept as is).
    - Each figure is stored once: an output whose PNG repeats an earlier one of the cell is
      dropped, and an output with a PNG keeps no ``text/plain`` (``SavedFigure(...)``,
      ``<Figure size ...>``).
    - An opaque PNG is re-encoded as a 256-colour palette PNG of the same pixel size
      (:func:`palette_png`), about a third of the bytes; the files in ``figures/`` are untouched.
    """
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = _coalesced(_figures_once(_without_progress(_coalesced(cell.outputs))))
    widgets_left = any(WIDGET_VIEW in output.get("data", {}) for cell in notebook.cells
                       for output in cell.get("outputs", []))
    if not widgets_left:
        notebook.metadata.pop("widgets", None)
    return notebook


def tidy_files(paths: list[Path]) -> list[Path]:
    """:func:`tidy_file` each of ``paths``; returns those whose bytes changed."""
    changed = []
    for path in map(Path, paths):
        before = path.read_bytes()
        tidy_file(path)
        if path.read_bytes() != before:
            changed.append(path)
    return changed


def _coalesced(outputs: list[NotebookNode]) -> list[NotebookNode]:
    """Consecutive stream outputs of the same name joined into one."""
    from nbformat.v4 import new_output

    joined: list[NotebookNode] = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if (output.output_type == "stream" and previous is not None
                and previous.output_type == "stream" and previous.name == output.name):
            joined[-1] = new_output("stream", name=output.name, text=previous.text + output.text)
        else:
            joined.append(output)
    return joined


def _without_progress(outputs: list[NotebookNode]) -> list[NotebookNode]:
    """The outputs without progress: bar updates cut from stderr, emptied stderr, bar widgets."""
    kept = []
    for output in outputs:
        if output.output_type == "stream" and output.name == "stderr":
            output.text = PROGRESS_UPDATE.sub("", output.text)
            if not output.text.strip():
                continue
        if _is_progress_widget(output):
            continue
        kept.append(output)
    return kept


def _is_progress_widget(output: NotebookNode) -> bool:
    """Whether ``output`` is a tqdm widget: a widget view shown as one tqdm status line."""
    data = output.get("data", {})
    if WIDGET_VIEW not in data:
        return False
    plain = data.get("text/plain", "")
    plain = "".join(plain) if isinstance(plain, list) else plain
    return PROGRESS_WIDGET.fullmatch(plain.strip()) is not None


def _figures_once(outputs: list[NotebookNode]) -> list[NotebookNode]:
    """The outputs without repeated PNGs; PNGs as palette PNGs, without a ``text/plain`` twin."""
    kept, seen = [], set()
    for output in outputs:
        png = output.get("data", {}).get("image/png")
        if png is not None:
            if png in seen:
                continue
            seen.add(png)
            output.data.pop("text/plain", None)
            output.data["image/png"] = palette_png(png)
        kept.append(output)
    return kept


def palette_png(encoded: str) -> str:
    """A base64 PNG as a 256-colour palette PNG of the same size; other than opaque RGB(A): as is.

    Median-cut palette, no dithering, maximal compression: the same input gives the same bytes
    (for a given Pillow). Only anti-aliased edges change visibly (in the offline figures, about
    4 % of the pixels; the mean change is under 0.3 of 255 levels). A palette image is returned
    unchanged, so this is idempotent.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    if not _opaque_colour(image):
        return encoded
    buffer = io.BytesIO()
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                  dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _opaque_colour(image: Image) -> bool:
    """Whether ``image`` is RGB, or RGBA with every pixel opaque."""
    return image.mode == "RGB" or (image.mode == "RGBA"
                                   and image.getchannel("A").getextrema() == (255, 255))


def main(argv: list[str] | None = None) -> int:
    """``python -m memrecall.rendered FILE...``: tidy rendered notebooks in place, say which."""
    import argparse

    parser = argparse.ArgumentParser(description="Tidy rendered notebooks in place (no run).")
    parser.add_argument("paths", nargs="+", type=Path)
    changed = tidy_files(parser.parse_args(argv).paths)
    print("\n".join(f"tidied {path}" for path in changed) or "all tidy already")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
