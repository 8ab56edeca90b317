"""``make reproduce``: run every numbered notebook with papermill, in order.

Writes executed notebooks to ``notebooks/rendered/<profile>/`` and figures to
``figures/<profile>/``; prints one progress line per notebook and, at the end, the summary table
that notebook 03 writes to ``results/<profile>/summary.csv``. Every notebook gets the papermill
parameter ``interactive=False`` (plain output, no widgets). The code that made the results is
recorded: ``results/<profile>/fingerprint.json`` (the package's source fingerprint, the git
revision and whether the source differs from it) and each rendered notebook's metadata
(``metadata.memrecall.code_fingerprint``).

One run per profile at a time: a second ``make reproduce`` of the same profile stops at once
with a message naming the running one (a lock on ``results/<profile>/.reproduce.lock``, released
by the operating system however the first run ends). A notebook whose cell raises, or whose
kernel dies, leaves ``<name>.failed.ipynb`` (the cells run so far) and a non-zero exit status.
Rendered notebooks are stored tidy (:func:`tidy_rendered`): no progress bars, each figure once,
so a re-render's diff shows what changed in the results.

Usage: ``python -m memrecall.reproduce --profile offline [--models a,b] [--device cpu]``

With ``--dtype bfloat16`` (or ``float16``) the models run in that dtype and everything goes to
``<profile>-<dtype>`` folders, so the float32 results are never overwritten.

Usage: ``python -m memrecall.reproduce --profile offline [--models a,b] [--device cpu]
[--dtype bfloat16]``
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ._io import (
    LockedError,
    atomic_write_text,
    code_fingerprint,
    exclusive_lock,
    is_hub_id,
    repo_root,
)
from .forward.batching import check_batch_size
from .models import (
    REGISTRY,
    DeviceUnavailableError,
    HubUnreachableError,
    check_device,
    profile_models,
    unavailable_hub_models,
)
from .models.placement import DTYPES
from .profiles import PROFILES
from .runmode import PLAIN_ENV

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from PIL.Image import Image

ROOT = repo_root()
NOTEBOOKS = ROOT / "notebooks"
_CLOCK = r"-?(?:\d+:)?\d{2}:\d{2}"  # tqdm's [H:]MM:SS
PROGRESS_UPDATE = re.compile(rf"\r[^\r\n]*?\[{_CLOCK}(?:<(?:\?|{_CLOCK}))?, [^\]\r\n]*\] *\n?")
r"""One update of a plain tqdm bar: ``\r``, a status line ending in its timing bracket, padding."""


def output_name(profile: str, dtype: str | None = None) -> str:
    """The folder name of a run's outputs: the profile, plus the dtype when not float32."""
    return profile if dtype in (None, "float32") else f"{profile}-{dtype}"


def numbered_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """``NN_*.ipynb`` in order: a wildcard, so a new notebook can't be forgotten."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def preflight(models: list[str]) -> None:
    """Fail in seconds, before any work, when a hub model can't be fetched."""
    hub = [m for m in models if m in REGISTRY and REGISTRY[m].hub_id] + \
        [m for m in models if m not in REGISTRY and is_hub_id(m)]
    missing = unavailable_hub_models(hub)
    if missing:
        raise HubUnreachableError(
            f"the Hugging Face hub is unreachable and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in the local cache. Run the packaged "
            "models instead: `make reproduce PROFILE=offline` (or PROFILE=smoke for a quick check)."
        )


def git_revision(root: Path = ROOT) -> dict[str, str | bool | None]:
    """The checkout's commit and whether the package's source differs from it (None: no git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "lib/memrecall"))
    except (OSError, subprocess.SubprocessError):
        return {"git_revision": None, "git_dirty": None}
    return {"git_revision": revision, "git_dirty": dirty}


def write_fingerprint(results_dir: Path) -> dict:
    """Record the code this run uses in ``results_dir/fingerprint.json``, next to summary.csv."""
    record = {"code_fingerprint": code_fingerprint(), **git_revision()}
    atomic_write_text(results_dir / "fingerprint.json",
                      json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def stamp_notebook(path: Path, fingerprint: str) -> None:
    """Store ``fingerprint`` in the notebook's ``metadata.memrecall.code_fingerprint``."""
    import nbformat

    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    notebook.metadata.setdefault("memrecall", {})["code_fingerprint"] = fingerprint
    nbformat.write(notebook, path)


def run_notebook(notebook: Path, output: Path, parameters: dict) -> None:
    """Execute one notebook; the rendered copy appears only if every cell succeeded.

    The rendered copy carries the code fingerprint in its metadata.
    """
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial.ipynb")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    failed.unlink(missing_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook), str(partial), parameters=parameters, kernel_name="python3",
            cwd=str(notebook.parent), progress_bar=False, stderr_file=sys.stderr,
        )
    except papermill.PapermillExecutionError as error:
        partial.replace(failed)
        raise NotebookFailed(
            f"{notebook.name}: cell {error.exec_count} raised {error.ename}: {error.evalue}",
            failed) from None
    except Exception as error:  # the kernel died (killed, out of memory) or would not start
        kept = partial.exists()
        if kept:
            partial.replace(failed)
        what = ("the kernel died (killed, or out of memory?)"
                if type(error).__name__ == "DeadKernelError"
                else f"{type(error).__name__}: {error}")
        raise NotebookFailed(f"{notebook.name}: {what}", failed if kept else None) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    stamp_notebook(partial, code_fingerprint())
    tidy_file(partial)
    partial.replace(output)


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
    return notebook


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
    """The outputs with progress-bar updates cut from stderr, and emptied stderr dropped."""
    kept = []
    for output in outputs:
        if output.output_type == "stream" and output.name == "stderr":
            output.text = PROGRESS_UPDATE.sub("", output.text)
            if not output.text.strip():
                continue
        kept.append(output)
    return kept


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


class NotebookFailed(RuntimeError):
    """A notebook failed: what went wrong, and where the failed copy is (None: none written)."""

    def __init__(self, message: str, failed_copy: Path | None):
        self.failed_copy = failed_copy
        where = (f"the executed notebook up to the error is in {failed_copy}" if failed_copy
                 else "no cell had run, so there is no failed copy")
        super().__init__(f"{message}\n  {where}")


def _batch_size(text: str) -> int:
    try:
        return check_batch_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=list(PROFILES))
    parser.add_argument("--models", help="comma-separated registry names (default: profile's)")
    parser.add_argument("--device", choices=["cuda", "cpu"])
    parser.add_argument("--batch-size", type=_batch_size)
    parser.add_argument("--dtype", choices=list(DTYPES),
                        help="weights' dtype (default float32); other dtypes write to "
                        "<profile>-<dtype> folders, beside the float32 results")
    parser.add_argument("--name", help="folder name of the outputs under results/, figures/ "
                        "and notebooks/rendered/ (default: the profile, plus -<dtype>)")
    args = parser.parse_args(argv)

    models = args.models.split(",") if args.models else profile_models(args.profile)
    try:
        check_device(args.device)
        preflight(models)
    except (DeviceUnavailableError, HubUnreachableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    name = args.name or output_name(args.profile, args.dtype)
    try:
        with exclusive_lock(ROOT / "results" / name / ".reproduce.lock",
                            f"the outputs of {name} (results/{name}, figures/{name}, "
                            f"notebooks/rendered/{name})"):
            return _run(args, models, name)
    except LockedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace, models: list[str], name: str) -> int:
    """Every notebook in order, under the outputs' lock; the exit status."""
    parameters = {"profile": args.profile, "models": ",".join(models),
                  "device": args.device, "batch_size": args.batch_size, "interactive": False,
                  "dtype": args.dtype}
    if name != args.profile:
        parameters |= {"results_dir": str(ROOT / "results" / name),
                       "figures_dir": str(ROOT / "figures" / name)}
    rendered = NOTEBOOKS / "rendered" / name
    notebooks = numbered_notebooks()
    os.environ[PLAIN_ENV] = "1"  # text progress bars, readable in both places
    write_fingerprint(ROOT / "results" / name)
    start = time.monotonic()
    for index, notebook in enumerate(notebooks, 1):
        began = time.monotonic()
        print(f"[{index}/{len(notebooks)}] {notebook.stem} ({args.profile}: {', '.join(models)})",
              flush=True)
        try:
            run_notebook(notebook, rendered / notebook.name, parameters)
        except NotebookFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"      done in {time.monotonic() - began:.0f} s -> {rendered / notebook.name}",
              flush=True)

    print(f"\nall {len(notebooks)} notebooks in {time.monotonic() - start:.0f} s; "
          f"figures in figures/{name}/")
    summary = ROOT / "results" / name / "summary.csv"
    if summary.is_file():
        print(f"\nsummary ({summary.relative_to(ROOT)}):")
        print(pd.read_csv(summary).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
