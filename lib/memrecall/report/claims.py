"""``claims.csv`` for people: the claims table to read, and the file each notebook merges into."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._io import CacheWarning, atomic_write_text
from ..analysis.claims import CLAIM_COLUMNS, CLAIMS, claims_frame, merge_claims
from .provenance import recorded

__all__ = ["claims_for_reading", "merge_claims_file"]


def _interval(row: Mapping[str, Any]) -> str:
    if not np.isfinite(row["value"]):
        return "not measured"
    digits = 2 if abs(row["value"]) < 10 else 0
    return (f"{row['value']:+.{digits}f} [{row['ci_low']:+.{digits}f}, "
            f"{row['ci_high']:+.{digits}f}]")


def claims_for_reading(rows: pd.DataFrame | Iterable[Mapping[str, Any]],
                       population: str | None = None) -> pd.DataFrame:
    """The claims as people read them: value and interval in one column, the paper's sentence.

    ``population``: keep only its rows (None: all).

    Returns:
        ``claim, model, population, lens, value [95% CI], p, n, verdict, the paper`` (one row
        per input row, in :data:`memrecall.analysis.CLAIMS` order).
    """
    frame = claims_frame(rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows)
    if population is not None:
        frame = frame[frame["population"] == population].reset_index(drop=True)
    return pd.DataFrame({
        "claim": frame["claim"], "model": frame["model"], "population": frame["population"],
        "lens": frame["lens"],
        "value [95% CI]": [_interval(r) for r in frame.to_dict("records")],
        "p": frame["p_value"].map(lambda p: "" if not np.isfinite(p) else f"{p:.2g}"),
        "n": frame["n"], "verdict": frame["verdict"],
        "the paper": frame["claim"].map(lambda c: CLAIMS[c].sentence),
    })


def merge_claims_file(path: str | Path, rows: Iterable[Mapping[str, Any]],
                      retract: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Merge ``rows`` into ``claims.csv`` (:func:`memrecall.analysis.merge_claims`), atomically.

    Rows with the same (claim, model, population, lens) are replaced, others kept (except those
    matching one of ``retract``, removed), so each notebook writes the claims it measures; the
    read, merge and write hold the folder's lock, and the code is recorded in
    ``provenance.json`` (:func:`memrecall.report.recorded`). A file that is not a claims table
    (other columns, not CSV, not UTF-8) is moved to ``<name>.bak`` with a :class:`CacheWarning`
    and replaced.

    Returns:
        The whole merged table.
    """
    with recorded(path) as path:
        return _merge_into(path, claims_frame(rows), list(retract))


def _merge_into(path: Path, new: pd.DataFrame,
                retract: list[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`merge_claims_file`'s read, merge and write (the caller holds the lock)."""
    old = None
    if path.is_file():
        try:
            old = pd.read_csv(io.StringIO(path.read_bytes().decode("utf-8")))
            problem = None if list(old.columns) == CLAIM_COLUMNS else \
                f"its columns are {list(old.columns)}, not {CLAIM_COLUMNS}"
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            problem = f"it is not a UTF-8 CSV table ({type(error).__name__})"
        if problem is not None:
            backup = path.with_name(path.name + ".bak")
            os.replace(path, backup)
            warnings.warn(f"{path}: not merged into, {problem}; kept as {backup}", CacheWarning,
                          stacklevel=2)
            old = None
    merged = merge_claims(old, new, retract)
    atomic_write_text(path, merged.to_csv(index=False))
    return merged
