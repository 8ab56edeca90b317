"""``timings.csv``: each notebook's wall time in the last ``make reproduce``, and its code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .._io import code_fingerprint
from .tables import write_csv

__all__ = ["TIMINGS_FILE", "TIMING_COLUMNS", "record_timing"]

TIMINGS_FILE = "timings.csv"
TIMING_COLUMNS = ["notebook", "seconds", "code_fingerprint"]


def record_timing(path: str | Path, notebook: str, seconds: float) -> pd.DataFrame:
    """Set ``notebook``'s row of the timings table at ``path`` (others kept, sorted by name).

    A file with other columns, or one that cannot be read, is started again.

    Returns:
        The whole table written.
    """
    path = Path(path)
    old = pd.DataFrame(columns=TIMING_COLUMNS)
    if path.is_file():
        try:
            read = pd.read_csv(path)
            if list(read.columns) == TIMING_COLUMNS:
                old = read[read["notebook"] != notebook]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            pass
    row = pd.DataFrame([{"notebook": notebook, "seconds": round(float(seconds), 1),
                         "code_fingerprint": code_fingerprint()}], columns=TIMING_COLUMNS)
    table = pd.concat([old, row], ignore_index=True) if len(old) else row
    table = table.sort_values("notebook", kind="stable").reset_index(drop=True)
    write_csv(table, path)
    return table
