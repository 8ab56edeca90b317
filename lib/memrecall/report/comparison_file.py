"""``paper_comparison.csv`` on disk: each notebook merges its analyses' rows into the one file."""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import CacheWarning, atomic_write_text
from .paper import ANALYSES, COMPARISON_COLUMNS, comparison_frame
from .provenance import recorded

__all__ = ["merge_comparison"]


_CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7}|\|{7})( |$)", re.MULTILINE)


def _unusable_comparison(path: Path) -> str | None:
    """Why the comparison file at ``path`` cannot be merged into, or None when it can.

    Unusable: not UTF-8, git conflict markers, not CSV, or columns other than exactly
    :data:`COMPARISON_COLUMNS` in that order.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        return f"it is not UTF-8 text (byte {error.start})"
    if _CONFLICT_MARKER.search(text):
        return "it holds git conflict markers"
    try:
        columns = list(pd.read_csv(io.StringIO(text)).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        return f"it is not a CSV table ({str(error).strip()[:120]})"
    if columns != COMPARISON_COLUMNS:
        return f"its columns are {columns}, not {COMPARISON_COLUMNS}"
    return None


def merge_comparison(path: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Write ``rows`` into ``paper_comparison.csv``, replacing the rows of their analyses.

    Rows of other analyses already in the file stay (each notebook owns its analyses), so the
    notebooks can run in any order. Rows end sorted by :data:`ANALYSES`, then as given.

    An existing file that cannot be merged into (not UTF-8, git conflict markers, not CSV, or
    not exactly :data:`COMPARISON_COLUMNS`) is never merged silently: it is moved to
    ``<name>.bak`` and replaced by ``rows`` alone, with a :class:`CacheWarning` naming it.

    The read, merge and write hold the folder's lock, so two notebooks merging at once keep
    both's rows; the code is recorded in ``provenance.json`` (:func:`memrecall.report.recorded`).

    Returns:
        The whole merged table.
    """
    rows = rows[COMPARISON_COLUMNS]
    unknown = set(rows["analysis"]) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; expected {ANALYSES}")
    with recorded(path) as path:
        return _merge_into(path, rows)


def _merge_into(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`merge_comparison`'s read, merge and write (the caller holds the lock)."""
    old = comparison_frame([])
    if path.is_file():
        problem = _unusable_comparison(path)
        if problem is None:
            old = pd.read_csv(path)
        else:
            backup = path.with_name(path.name + ".bak")
            os.replace(path, backup)
            warnings.warn(f"{path}: not merged into, {problem}; kept as {backup} and replaced "
                          f"by this run's rows ({', '.join(sorted(set(rows['analysis'])))})",
                          CacheWarning, stacklevel=2)
    kept = old[~old["analysis"].isin(set(rows["analysis"]))]
    merged = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows.copy()
    order = merged["analysis"].map({a: i for i, a in enumerate(ANALYSES)})
    merged = merged.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)
    atomic_write_text(path, merged.to_csv(index=False))
    return merged
