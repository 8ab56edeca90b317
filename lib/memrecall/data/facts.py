"""ROME's known facts (``known_1000.json``): subject, relation, prompt and attribute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .records import DataFormatError, parse_records
from .sources import FACTS_FIELDS, resolve_data_file, verify_data_file

__all__ = ["FACTS_FIELDS", "load_facts", "parse_facts"]


def parse_facts(raw: bytes, where: str) -> list[dict[str, Any]]:
    """The records of a ``known_1000.json`` file's bytes, each checked field by field.

    Raises:
        DataFormatError: bad JSON, or a record without a field of :data:`FACTS_FIELDS` or with
            one of the wrong type (the message names ``where`` and the record index).
    """
    records = parse_records(raw, FACTS_FIELDS, where)
    for i, rec in enumerate(records):
        if not isinstance(rec["known_id"], int) or isinstance(rec["known_id"], bool):
            raise DataFormatError(
                f"{where}: record {i}: field 'known_id' is {rec['known_id']!r}, expected an int"
            )
        for field in FACTS_FIELDS[1:]:
            if not isinstance(rec[field], str):
                raise DataFormatError(
                    f"{where}: record {i}: field '{field}' is {rec[field]!r:.60}, expected a string"
                )
    return records


def load_facts(path: str | Path | None = None) -> pd.DataFrame:
    """Load ROME's known facts (``known_1000.json``, 1,209 records), in file order.

    Args:
        path: Optional explicit ``known_1000.json`` or data folder.

    Returns:
        A new DataFrame with columns ``known_id, subject, relation_id, prompt, target, text``
        where ``target`` is the record's ``attribute`` and ``text = prompt + " " + target``.

    Raises:
        DataFormatError: Bad JSON or a record lacking a field (names file and record index).
        ChecksumError: The content differs from the pinned ROME records.
        DataNotFoundError: The file was found nowhere.

    """
    file = resolve_data_file("facts", path, verify=False)
    records = parse_facts(file.read_bytes(), str(file))
    verify_data_file("facts", file)
    df = pd.DataFrame(
        {
            "known_id": [r["known_id"] for r in records],
            "subject": [r["subject"] for r in records],
            "relation_id": [r["relation_id"] for r in records],
            "prompt": [r["prompt"].rstrip() for r in records],
            "target": [r["attribute"].strip() for r in records],
        }
    )
    df["text"] = df["prompt"] + " " + df["target"]
    return df
