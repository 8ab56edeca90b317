"""Which code made each result file: ``provenance.json`` beside the files.

Every writer of a file under ``results/<profile>/`` (:func:`memrecall.report.write_csv`,
:func:`memrecall.report.merge_comparison`, :func:`memrecall.report.write_knockouts_csv`) writes
it inside :func:`recorded`: holding the folder's lock, the file is written, then its entry
``{"<file name>": {"code_fingerprint": ..., "written": <UTC ISO time>}}`` is merged into the
folder's ``provenance.json``. ``fingerprint.json`` (``make reproduce``) records the *run*; this
file records which code made each *file*, so a table an older run left behind shows as such.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .._io import (
    CacheWarning,
    UnreadableFileError,
    atomic_write_text,
    code_fingerprint,
    error_text,
    exclusive_lock,
    read_json_file,
)

__all__ = ["PROVENANCE", "files_from_other_code", "read_provenance", "recorded"]

PROVENANCE = "provenance.json"
"""The file, in each results folder, naming the code that made each of its files."""

LOCK = ".provenance.lock"
LOCK_WAIT_S = 120.0
"""How long a writer waits for another one to finish its file (seconds): writes take
milliseconds, so only a hung writer makes it wait that long."""


def read_provenance(folder: str | Path) -> dict[str, dict[str, str]]:
    """The records of ``folder/provenance.json``: file name -> ``code_fingerprint``, ``written``.

    Returns:
        ``{}`` when there is no such file.

    Raises:
        UnreadableFileError: the file is not JSON, or not file names mapped to records that
            each hold a ``code_fingerprint`` string.
        OSError: it cannot be read.
    """
    path = Path(folder) / PROVENANCE
    try:
        records = read_json_file(path)
    except FileNotFoundError:
        return {}
    if not isinstance(records, dict) or not all(
            isinstance(record, dict) and isinstance(record.get("code_fingerprint"), str)
            for record in records.values()):
        raise UnreadableFileError(f"{path}: not file names mapped to records with a "
                                  "code_fingerprint")
    return records


@contextmanager
def recorded(path: str | Path, fingerprint: str | None = None) -> Iterator[Path]:
    """Write ``path`` in the ``with`` block; then its code is recorded in ``provenance.json``.

    The block runs holding the folder's lock (``.provenance.lock``), so concurrent writers
    (two notebooks, two threads) neither lose each other's entries nor record one's code for
    the other's file, and a read-modify-write of the file itself in the block is safe too. The
    entry is recorded only when the block succeeds. Recording never fails the write: a
    ``provenance.json`` that is unreadable or not provenance records is moved to
    ``provenance.json.bak`` and started anew, and one that cannot be written is left as it
    was; either way with a :class:`~memrecall._io.CacheWarning` naming it.

    Args:
        path: the file the block writes.
        fingerprint: the code's fingerprint; default :func:`memrecall._io.code_fingerprint`.

    Yields:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        memrecall._io.LockedError: another writer held the lock for :data:`LOCK_WAIT_S`.
    """
    path = Path(path)
    folder = path.parent
    with exclusive_lock(folder / LOCK, f"the results in {folder}", wait_s=LOCK_WAIT_S):
        yield path
        _record(path, fingerprint or code_fingerprint())


def _record(path: Path, fingerprint: str) -> None:
    """Merge ``path``'s entry into its folder's provenance (the caller holds the lock)."""
    target = path.parent / PROVENANCE
    try:
        records = read_provenance(path.parent)
    except (UnreadableFileError, OSError) as error:
        backup = target.with_name(target.name + ".bak")
        try:
            os.replace(target, backup)
        except OSError as move_error:
            _warn(f"{target} is unusable ({error}) and could not be moved aside "
                  f"({error_text(move_error)}): {path.name} was written, its code not recorded")
            return
        _warn(f"{target}: unusable ({error}); kept as {backup} and started anew, with "
              f"{path.name} only")
        records = {}
    records[path.name] = {"code_fingerprint": fingerprint,
                          "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        atomic_write_text(target, json.dumps(records, indent=2, sort_keys=True) + "\n")
    except OSError as error:
        _warn(f"{target} could not be written ({error_text(error)}): {path.name} was written, "
              "its code not recorded")


def _warn(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=2)


def files_from_other_code(folder: str | Path,
                          fingerprint: str | None = None) -> dict[str, str | None]:
    """The result files of ``folder`` that the code ``fingerprint`` did not make.

    Result files are the folder's ``*.csv`` and every file named in its ``provenance.json``.

    Args:
        folder: a results folder.
        fingerprint: the code to compare with; default :func:`memrecall._io.code_fingerprint`.

    Returns:
        File name -> the fingerprint recorded for it (``None``: none recorded), sorted by name.

    Raises:
        UnreadableFileError: see :func:`read_provenance`.
        OSError: see :func:`read_provenance`.
    """
    folder = Path(folder)
    fingerprint = fingerprint or code_fingerprint()
    records = read_provenance(folder)
    names = {p.name for p in folder.glob("*.csv")} | {n for n in records if (folder / n).is_file()}
    recorded_code = {name: records.get(name, {}).get("code_fingerprint") for name in names}
    return {name: code for name, code in sorted(recorded_code.items()) if code != fingerprint}
