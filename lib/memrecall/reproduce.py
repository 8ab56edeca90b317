"""``make reproduce``: run every numbered notebook with papermill, in order.

Writes executed notebooks to ``notebooks/rendered/<profile>/`` and figures to
``figures/<profile>/``; prints one progress line per notebook and, at the end, the summary table
that notebook 03 writes to ``results/<profile>/summary.csv``.

Usage: ``python -m memrecall.reproduce --profile offline [--models a,b] [--device cpu]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from .models import REGISTRY, HubUnreachableError, profile_models, unavailable_hub_models

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def numbered_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """``NN_*.ipynb`` in order: a wildcard, so a new notebook can't be forgotten."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def preflight(models: list[str]) -> None:
    """Fail in seconds, before any work, when a hub model can't be fetched."""
    hub = [m for m in models if m in REGISTRY and REGISTRY[m].hub_id] + \
        [m for m in models if m not in REGISTRY and m.count("/") == 1]
    missing = unavailable_hub_models(hub)
    if missing:
        raise HubUnreachableError(
            f"the Hugging Face hub is unreachable and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in the local cache. Run the packaged "
            "models instead: `make reproduce PROFILE=offline` (or PROFILE=smoke for a quick check)."
        )


def run_notebook(notebook: Path, output: Path, parameters: dict) -> None:
    """Execute one notebook; the rendered copy appears only if every cell succeeded."""
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
        raise NotebookFailed(notebook.name, error, failed) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)


class NotebookFailed(RuntimeError):
    """A cell raised: carries the notebook, the cell's error and where the failed copy is."""

    def __init__(self, name: str, error, failed_copy: Path):
        super().__init__(
            f"{name}: cell {error.exec_count} raised {error.ename}: {error.evalue}\n"
            f"  the executed notebook up to the error is in {failed_copy}"
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=["paper", "offline", "smoke"])
    parser.add_argument("--models", help="comma-separated registry names (default: profile's)")
    parser.add_argument("--device", choices=["cuda", "cpu"])
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args(argv)

    models = args.models.split(",") if args.models else profile_models(args.profile)
    try:
        preflight(models)
    except HubUnreachableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    parameters = {"profile": args.profile, "models": ",".join(models),
                  "device": args.device, "batch_size": args.batch_size}
    rendered = NOTEBOOKS / "rendered" / args.profile
    notebooks = numbered_notebooks()
    os.environ["MEMRECALL_PLAIN_PROGRESS"] = "1"  # text progress bars, readable in both places
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
          f"figures in figures/{args.profile}/")
    summary = ROOT / "results" / args.profile / "summary.csv"
    if summary.is_file():
        print(f"\nsummary ({summary.relative_to(ROOT)}):")
        print(pd.read_csv(summary).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
