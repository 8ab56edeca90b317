"""``make reproduce``: run every numbered notebook with papermill, in order.

Writes executed notebooks to ``notebooks/rendered/<profile>/`` and figures to
``figures/<profile>/``; prints one progress line per notebook and, at the end, the summary table
that notebook 03 writes to ``results/<profile>/summary.csv``. Every notebook gets the papermill
parameter ``interactive=False`` (plain output, no widgets). The run is recorded in
``results/<profile>/fingerprint.json`` (the package's source fingerprint, the git revision,
whether the source differs from it, the profile, dtype and models), written only when every
notebook succeeded (a failed run leaves the previous one as it was, and its own record in
``fingerprint.incomplete.json``), and in each rendered notebook's metadata
(``metadata.memrecall.code_fingerprint`` and ``.models``). Which code made each *file* is in
``results/<profile>/provenance.json`` (:mod:`memrecall.report.provenance`); the end-of-run
summary names those this run's code did not make. Each notebook's wall time goes to
``results/<profile>/timings.csv`` (:func:`memrecall.report.record_timing`).

Models other than the profile's (``--models``, ``make reproduce MODELS=...``) write to their own
folders, ``<profile>-<models>`` (:func:`output_name`), so a subset never rewrites the profile's
multi-model tables. Names are checked before any work (:func:`check_models`).

One run per profile at a time: a second ``make reproduce`` of the same profile stops at once
with a message naming the running one (a lock on ``results/<profile>/.reproduce.lock``, released
by the operating system however the first run ends). A notebook whose cell raises, or whose
kernel dies, leaves ``<name>.failed.ipynb`` (the cells run so far) and a non-zero exit status.
Rendered notebooks are stored tidy (:func:`memrecall.rendered.tidy_rendered`): no progress
bars, each figure once, so a re-render's diff shows what changed in the results. SIGTERM ends
a run like Ctrl-C (the partial notebook is removed); what a SIGKILLed run leaves
(``.partial.ipynb``, atomic-write temp files) is removed at the start of the next run of the
same outputs (:func:`remove_stale`).

With ``--dtype bfloat16`` (or ``float16``) the models run in that dtype and everything goes to
``<profile>-<dtype>`` folders, so the float32 results are never overwritten. Usage:
``python -m memrecall.reproduce --profile offline [--models a,b] [--device cpu] [--dtype D]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from ._io import (
    TEMP_NAME,
    LockedError,
    UnreadableFileError,
    atomic_write_text,
    code_fingerprint,
    exclusive_lock,
    is_hub_id,
    repo_root,
    slug,
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
from .rendered import tidy_file
from .report.timings import TIMINGS_FILE, record_timing
from .runmode import PLAIN_ENV

ROOT = repo_root()
NOTEBOOKS = ROOT / "notebooks"


FINGERPRINT = "fingerprint.json"
INCOMPLETE = "fingerprint.incomplete.json"
STALE_AFTER_S = 600
"""An atomic-write temp file older than this (seconds since its last write) is left over."""
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,119}")
"""A ``--name``: one path component, no ``/``, never ``.`` or ``..``, not hidden."""


class UnknownModelError(ValueError):
    """``--models`` names no model, or a name that is not a model."""


def output_name(profile: str, dtype: str | None = None,
                models: list[str] | tuple[str, ...] | None = None) -> str:
    """The folder name of a run's outputs.

    The profile; plus ``-<dtype>`` when not float32; plus ``-<models>`` (:func:`models_slug`)
    when ``models`` are not the profile's own (in any order), so a subset or another model never
    rewrites the profile's tables.
    """
    name = profile if dtype in (None, "float32") else f"{profile}-{dtype}"
    if models is not None and sorted(models) != sorted(profile_models(profile)):
        name = f"{name}-{models_slug(models)}"
    return name


def models_slug(models: list[str] | tuple[str, ...]) -> str:
    """The models as one file-name part: slugs joined by ``+`` (long lists: cut, plus a hash)."""
    joined = "+".join(slug(m, None) for m in models)
    if len(joined) > 80:
        joined = f"{joined[:63]}-{hashlib.sha256(joined.encode()).hexdigest()[:16]}"
    return joined


def parse_models(text: str | None, profile: str) -> list[str]:
    """``--models`` as a list (duplicates dropped); None: the profile's models.

    Raises:
        UnknownModelError: a value that names no model (``","``, blanks).
    """
    if text is None:
        return profile_models(profile)
    models = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not models:
        raise UnknownModelError(
            f"--models {text!r} names no model; give comma-separated names "
            f"({', '.join(REGISTRY)}, or hub ids org/name), or leave it out (MODELS unset) "
            f"for the {profile} profile's models")
    return models


def check_models(models: list[str]) -> None:
    """Every name is a registry name, a hub id ``org/name`` or an existing model folder/.gguf.

    Raises:
        UnknownModelError: naming the unknown models and the registry's names.
    """
    unknown = [m for m in models
               if m not in REGISTRY and not is_hub_id(m) and not Path(m).expanduser().exists()]
    if unknown:
        raise UnknownModelError(
            f"unknown model{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"not a registry name ({', '.join(REGISTRY)}), a hub id (org/name) or an existing "
            "model folder or .gguf file")


def numbered_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """``NN_*.ipynb`` in order: a wildcard, so a new notebook can't be forgotten."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def preflight(models: list[str]) -> None:
    """Fail in seconds, before any work: an unknown model name, a hub model that can't be fetched.

    Raises:
        UnknownModelError: see :func:`check_models`.
        HubUnreachableError: the hub does not answer and a hub model is not cached.
    """
    check_models(models)
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


def write_fingerprint(results_dir: Path, models: list[str] | None = None,
                      name: str = FINGERPRINT, **details: str | None) -> dict:
    """Record a run, its code and models, profile, dtype (``details``), in ``results_dir/name``.

    A run writes it as :data:`INCOMPLETE` first and renames it to :data:`FINGERPRINT` only
    when every notebook succeeded (:func:`commit_fingerprint`). It describes the run, not each
    file: which code made each file is in ``provenance.json``
    (:mod:`memrecall.report.provenance`).
    """
    record = {"code_fingerprint": code_fingerprint(), **git_revision(), **details}
    if models is not None:
        record["models"] = list(models)
    atomic_write_text(results_dir / name, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def commit_fingerprint(results_dir: Path) -> None:
    """The finished run's record (:data:`INCOMPLETE`) becomes ``fingerprint.json``."""
    os.replace(results_dir / INCOMPLETE, results_dir / FINGERPRINT)


def stamp_notebook(path: Path, fingerprint: str, models: list[str] | None = None) -> None:
    """Store ``fingerprint`` (and ``models``) in the notebook's ``metadata.memrecall``."""
    import nbformat

    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    record = notebook.metadata.setdefault("memrecall", {})
    record["code_fingerprint"] = fingerprint
    if models is not None:
        record["models"] = list(models)
    nbformat.write(notebook, path)


def remove_stale(folders: list[Path], rendered: Path, now: float | None = None) -> list[Path]:
    """Remove what a killed run left; call it holding the outputs' lock. Returns what went.

    ``rendered``'s ``.*.partial.ipynb`` (only ``make reproduce`` writes there, and the lock says
    no other run is live); under ``folders``, atomic-write temp files (:data:`TEMP_NAME`)
    untouched for :data:`STALE_AFTER_S` (a JupyterLab session may be writing to a shared cache:
    a live write is never that old). Nothing else is touched.
    """
    now = time.time() if now is None else now
    stale = sorted(rendered.glob(".*.partial.ipynb")) if rendered.is_dir() else []
    for folder in folders:
        if folder.is_dir():
            stale += sorted(p for p in folder.rglob(".*.tmp")
                            if TEMP_NAME.fullmatch(p.name) and p.is_file()
                            and now - p.stat().st_mtime > STALE_AFTER_S)
    removed = []
    for path in stale:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


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
    models = parameters.get("models")
    stamp_notebook(partial, code_fingerprint(),
                   models.split(",") if isinstance(models, str) else models)
    tidy_file(partial)
    partial.replace(output)


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


def _safe_name(text: str) -> str:
    if not SAFE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a folder name: use one path component of letters, digits and "
            "_ . + - (no /, not starting with . or -)")
    return text


def unwritable(folders: list[Path]) -> str | None:
    """The first of ``folders`` (created if needed) where a file can't be written: a message."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            return (f"{_shown(folder)} is not writable ({error.strerror or error}): make it "
                    "writable, or write elsewhere with --name")
    return None


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    SIGTERM ends it as Ctrl-C does (exit status 143): the partial notebook is removed and the
    lock released.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=list(PROFILES))
    parser.add_argument("--models", help="comma-separated registry names (default: profile's)")
    parser.add_argument("--device", choices=["cuda", "cpu"])
    parser.add_argument("--batch-size", type=_batch_size)
    parser.add_argument("--dtype", choices=list(DTYPES),
                        help="weights' dtype (default float32); other dtypes write to "
                        "<profile>-<dtype> folders, beside the float32 results")
    parser.add_argument("--name", type=_safe_name,
                        help="folder name of the outputs under results/, figures/ and "
                        "notebooks/rendered/ (default: the profile, plus -<dtype>, plus "
                        "-<models> when not the profile's)")
    args = parser.parse_args(argv)

    try:
        models = parse_models(args.models, args.profile)
        check_device(args.device)
        preflight(models)
    except (UnknownModelError, DeviceUnavailableError, HubUnreachableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    name = args.name or output_name(args.profile, args.dtype, models)
    folders = [ROOT / "results" / name, ROOT / "figures" / name, NOTEBOOKS / "rendered" / name]
    problem = unwritable(folders)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        with exclusive_lock(ROOT / "results" / name / ".reproduce.lock",
                            f"the outputs of {name} (results/{name}, figures/{name}, "
                            f"notebooks/rendered/{name})"):
            removed = remove_stale(folders[:2], folders[2])
            if removed:
                print(f"removed {len(removed)} file(s) left by an interrupted run: "
                      + ", ".join(map(_shown, removed)), flush=True)
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
    results = ROOT / "results" / name
    write_fingerprint(results, models, INCOMPLETE, profile=args.profile,
                      dtype=args.dtype or "float32")
    start = time.monotonic()
    for index, notebook in enumerate(notebooks, 1):
        began = time.monotonic()
        print(f"[{index}/{len(notebooks)}] {notebook.stem} ({args.profile}: {', '.join(models)})",
              flush=True)
        try:
            run_notebook(notebook, rendered / notebook.name, parameters)
        except NotebookFailed as error:
            print(f"error: {error}\n  {_shown(results / FINGERPRINT)} still records "
                  f"the last complete run; this one's is {INCOMPLETE} (outputs written before "
                  "the failure are from it)", file=sys.stderr)
            return 1
        seconds = time.monotonic() - began
        record_timing(results / TIMINGS_FILE, notebook.stem, seconds)
        print(f"      done in {seconds:.0f} s -> {rendered / notebook.name}", flush=True)

    commit_fingerprint(results)
    print(f"\nall {len(notebooks)} notebooks in {time.monotonic() - start:.0f} s; "
          f"figures in figures/{name}/, tables in results/{name}/")
    summary = ROOT / "results" / name / "summary.csv"
    if summary.is_file():
        print(f"\nsummary ({summary.relative_to(ROOT)}):")
        print(pd.read_csv(summary).to_string(index=False))
    print(other_code_line(results))
    return 0


def other_code_line(results_dir: Path, fingerprint: str | None = None) -> str:
    """The end-of-run line on the files that other code made (``results_dir/provenance.json``).

    ``fingerprint``: the run's code, default this process's.
    """
    from .report.provenance import PROVENANCE, files_from_other_code  # late: report loads analysis

    fingerprint = fingerprint or code_fingerprint()
    where = _shown(results_dir)
    try:
        others = files_from_other_code(results_dir, fingerprint)
    except (UnreadableFileError, OSError) as error:
        return (f"\n{where}/{PROVENANCE} is unreadable, so which code made each file is "
                f"unknown: {error}")
    if not others:
        return f"\nevery table in {where}/ was made by this code ({fingerprint})"
    return (f"\n{len(others)} file(s) in {where}/ were not made by this code ({fingerprint}): "
            + ", ".join(f"{name} ({code or 'no record'})" for name, code in others.items()))


if __name__ == "__main__":
    sys.exit(main())
