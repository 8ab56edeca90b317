"""Reading data files safely: UTF-8 with the line of a bad byte, JSON records with their fields.

Every error names the file, and the line or record, so a corrupt or hand-edited file says where.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DataFormatError", "check_record", "content_sha256", "decode_utf8", "parse_json",
           "parse_records", "read_utf8", "unicode_problem", "validate_texts"]


class DataFormatError(ValueError):
    """A data file or a list of texts does not have the expected format."""


def content_sha256(records: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    """Return the content checksum of JSON records.

    The sha256 of ``json.dumps`` of the records sorted by ``fields[0]`` and restricted to
    ``fields`` (``sort_keys=True, ensure_ascii=False, separators=(",", ":")``). Extra fields
    and the file's layout do not change it.

    Args:
        records: The parsed records (each must have all of ``fields``).
        fields: The pinned fields.

    Returns:
        The lowercase hex digest.

    """
    canon = [{k: rec[k] for k in fields} for rec in sorted(records, key=lambda r: r[fields[0]])]
    text = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decode_utf8(raw: bytes, where: str | Path) -> str:
    """``raw`` decoded as UTF-8, or an error naming ``where``, the line and the column.

    Raises:
        DataFormatError: the bytes are not UTF-8.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        lineno = raw.count(b"\n", 0, err.start) + 1
        raise DataFormatError(
            f"{where}: line {lineno}: not UTF-8 text (byte "
            f"{raw[err.start]:#04x} at column {err.start - line_start + 1}); the file is corrupt "
            "or in another encoding") from None


def read_utf8(path: str | Path) -> str:
    """A text file's contents; a byte that is not UTF-8 is an error naming file and line."""
    return decode_utf8(Path(path).read_bytes(), path)


def parse_records(raw: bytes, fields: Sequence[str], where: str) -> list[dict[str, Any]]:
    """The records of a JSON file's bytes: a list of objects, each with every one of ``fields``.

    Raises:
        DataFormatError: bad UTF-8 or JSON, not a list of objects, or a record without a field
            (the message names ``where`` and the record index).
    """
    records = parse_json(decode_utf8(raw, where), where)
    if not isinstance(records, list):
        raise DataFormatError(f"{where}: expected a JSON list of records, got {type(records)}")
    for i, rec in enumerate(records):
        check_record(rec, fields, f"{where}: record {i}")
    return records


def parse_json(text: str, where: str) -> Any:
    """``text`` parsed as JSON; bad JSON is a :class:`DataFormatError` naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{where}: bad JSON: {err}") from None


def check_record(record: Any, fields: Sequence[str], where: str) -> dict[str, Any]:
    """``record`` itself, checked to be a JSON object holding every one of ``fields``."""
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {record!r:.60}")
    for field in fields:
        if field not in record:
            raise DataFormatError(f"{where}: missing field '{field}'")
    return record


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate: no tokenizer reads it), or None.

    A lone surrogate (U+D800 to U+DFFF outside a pair) comes from text decoded with
    ``surrogateescape`` or ``surrogatepass``, or from JSON's escapes; it has no UTF-8 form.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (f"holds a lone surrogate {text[error.start]!r} at character {error.start}, not "
                f"valid Unicode (no tokenizer can read it)")
    return None


def validate_texts(texts: Iterable[str]) -> list[str]:
    """Check texts for probing: each needs a prompt and a final target word.

    Args:
        texts: The texts (any iterable, e.g. a list or a pandas Series).

    Returns:
        The texts as a list, unchanged.

    Raises:
        DataFormatError: A text is not a string, holds a lone surrogate (not valid Unicode),
            is empty/whitespace-only or has one word; the message names its row (0-based
            position).

    """
    out = list(texts)
    hint = "a probe needs a prompt and a target word"
    for i, text in enumerate(out):
        if not isinstance(text, str):
            missing = text is None or (isinstance(text, float) and text != text)
            raise DataFormatError(f"row {i}: expected a string, got "
                                  + (f"a missing value ({text!r})" if missing
                                     else type(text).__name__))
        problem = unicode_problem(text)
        if problem:
            raise DataFormatError(f"row {i}: text {text!r} {problem}")
        n_words = len(text.split())
        if n_words == 0:
            raise DataFormatError(f"row {i}: text {text!r} is empty or whitespace-only; {hint}")
        if n_words == 1:
            raise DataFormatError(f"row {i}: text {text!r} has one word; {hint}")
    return out
