"""IdioMem: the 852 idioms and their four filter flags (``idiomem.jsonl``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .records import DataFormatError, check_record, decode_utf8, parse_json
from .sources import FileKey, file_key, resolve_data_file, verify_data_file

__all__ = ["IDIOMEM_COLUMNS", "IDIOMEM_FLAGS", "load_idiomem", "parse_idiomem"]

IDIOMEM_COLUMNS = (
    "idiom",
    "id",
    "source",
    "prompt_comp_ind",
    "similarity_ind",
    "frequent_target_ind",
    "hard_to_guess",
)
# The four boolean filter flags of IdioMem (PAPER.md, section 2), in file order.
IDIOMEM_FLAGS = IDIOMEM_COLUMNS[3:]
_IDIOMEM_BOOLS = IDIOMEM_FLAGS

_IDIOMEM_CACHE: dict[FileKey, tuple[tuple[Any, ...], ...]] = {}


def parse_idiomem(path: Path) -> tuple[tuple[Any, ...], ...]:
    """Rows of an ``idiomem.jsonl`` file, values in :data:`IDIOMEM_COLUMNS` order.

    Blank lines are skipped.

    Raises:
        DataFormatError: a line is not UTF-8, or not a JSON object with every field of the right
            type (the message names the file, the line and the field).
    """
    rows: list[tuple[Any, ...]] = []
    text = decode_utf8(Path(path).read_bytes(), path)
    for lineno, line in enumerate(text.split("\n"), start=1):
        where = f"{path}: line {lineno}"
        if not line.strip():
            continue
        rec = check_record(parse_json(line, where), IDIOMEM_COLUMNS, where)
        for field in IDIOMEM_COLUMNS[:3]:
            if not isinstance(rec[field], str) or not rec[field].strip():
                raise DataFormatError(
                    f"{where}: field '{field}' is {rec[field]!r:.60}, expected a non-empty "
                    "string"
                )
        for field in _IDIOMEM_BOOLS:
            if not isinstance(rec[field], bool):
                raise DataFormatError(
                    f"{where}: field '{field}' is {rec[field]!r:.60}, expected true or false"
                )
        rows.append(tuple(rec[c] for c in IDIOMEM_COLUMNS))
    return tuple(rows)


def load_idiomem(path: str | Path | None = None) -> pd.DataFrame:
    """Load IdioMem (852 idioms and their four filter flags), in file order.

    Args:
        path: Optional explicit ``idiomem.jsonl`` or data folder (see
            :func:`resolve_data_file`).

    Returns:
        A new DataFrame with columns :data:`IDIOMEM_COLUMNS` (the four flags as bool).

    Raises:
        DataFormatError: A line is not valid JSON or lacks a field (names file and line).
        ChecksumError: The file differs from the pinned IdioMem file.
        DataNotFoundError: The file was found nowhere.

    """
    file = resolve_data_file("idiomem", path, verify=False)
    ckey = file_key(file, "rows")
    rows = _IDIOMEM_CACHE.get(ckey)
    if rows is None:
        rows = parse_idiomem(file)
        verify_data_file("idiomem", file)
        _IDIOMEM_CACHE[ckey] = rows
    else:
        verify_data_file("idiomem", file)
    df = pd.DataFrame(list(rows), columns=list(IDIOMEM_COLUMNS))
    return df.astype({c: bool for c in _IDIOMEM_BOOLS})
