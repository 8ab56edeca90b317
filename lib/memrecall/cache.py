"""Results cache: one Parquet file per (model, revision, inputs, parameters, code fingerprint).

Files are written atomically (temp file in the same folder, then rename), so an interrupted run
leaves either a complete result or none, and a rerun recomputes only what is missing. The key
holds :func:`memrecall._io.code_fingerprint` (a hash of the package's source), so after an edit
to the lens or the sweep the results are recomputed, not reused. A JSON sidecar records the
whole key (model, revision, dtype, input checksum, parameters, code fingerprint) and the file's
sha256; both are checked before a cached file is used, and a missing, truncated, corrupt or
mismatched entry is recomputed with one warning line. A cache folder that cannot be written
(read-only, full) only costs the caching, never the result. No pickles.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from ._io import (
    WRITE_ERRORS,
    CacheWarning,
    atomic_write,
    atomic_write_text,
    code_fingerprint,
    error_text,
    read_json_file,
    sha256_file,
    slug,
)

__all__ = [
    "ARRAY_COLUMNS",
    "CacheWarning",
    "cache_path",
    "cached",
    "frame_sha256",
    "load_frame",
    "result_key",
    "save_frame",
    "verify_entry",
    "write_sidecar",
]

ARRAY_COLUMNS = ("pred_rank", "pred_prob", "target_rank", "target_prob")


def frame_sha256(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A checksum of the inputs that determine a result (by default every column, as text)."""
    columns = columns or list(frame.columns)
    payload = frame[columns].astype(str).to_csv(index=False).encode()
    return hashlib.sha256(payload).hexdigest()


class Provenanced(Protocol):
    """Anything that says where it comes from (a :class:`memrecall.LM`)."""

    def provenance(self) -> dict:
        """Model, revision, dtype and weights' identity."""


def result_key(lm: Provenanced, inputs_sha256: str, kind: str, **params) -> dict:
    """Everything a cached result depends on, the package's source included."""
    return {"kind": kind, **lm.provenance(), "inputs_sha256": inputs_sha256,
            "params": params, "code_fingerprint": code_fingerprint()}


def cache_path(cache_dir: str | Path, key: Mapping) -> Path:
    """Where the result for ``key`` lives: readable prefix plus a hash of the whole key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{slug(str(key['model']))}__{slug(key['kind'])}__{digest[:16]}.parquet"
    return Path(cache_dir) / name


def write_sidecar(sidecar: Path, key: Mapping, files: list[Path], **extra) -> None:
    """Vouch for ``files`` (written before it): the key, and each file's size and sha256."""
    record = {"key": dict(key), "files": {f.name: {"bytes": f.stat().st_size,
                                                   "sha256": sha256_file(f)} for f in files},
              **extra}
    atomic_write_text(sidecar, json.dumps(record, indent=2, sort_keys=True, default=str))


def save_frame(frame: pd.DataFrame, path: str | Path, provenance: Mapping | None = None) -> None:
    """Write ``frame`` (numpy-array cells allowed) to Parquet atomically, a sidecar beside it.

    The sidecar (``path`` with ``.json``) holds ``provenance`` (the cache key), the row count
    and the Parquet file's size and sha256. It is written last, so it vouches only for a
    complete file; :func:`verify_entry` checks it before a cached file is used.
    """
    path = Path(path)
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))
    write_sidecar(path.with_suffix(".json"), provenance or {}, [path], rows=len(frame))


def load_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written by :func:`save_frame`; per-layer cells come back as numpy arrays.

    Only object columns hold per-layer cells: a column of plain numbers under one of the
    :data:`ARRAY_COLUMNS` names (a knockout sweep's ``target_prob``) stays numeric.
    """
    frame = pd.read_parquet(path)
    for column in ARRAY_COLUMNS:
        if column in frame.columns and frame[column].dtype == object:
            frame[column] = [np.asarray(cell) for cell in frame[column]]
    return frame


def _canonical(key: Mapping) -> str:
    """``key`` as its JSON round trip writes it (tuples as lists, keys as strings), sorted."""
    return json.dumps(json.loads(json.dumps(key, default=str)), sort_keys=True)


def verify_entry(path: str | Path, key: Mapping, files: list[Path] | None = None,
                 sidecar: str | Path | None = None) -> str | None:
    """Why a cache entry must not be used for ``key``; None when it is sound.

    Checks, in order: the files and the sidecar exist, the sidecar is a regular file (not a FIFO
    or a device, at most 16 MiB) that parses, its key is ``key``
    (the whole key, not only the hash in the file name), and each file's size and sha256 are
    the ones recorded when it was written.

    Args:
        path: the entry's file (a Parquet frame).
        key: the key it must have been computed for.
        files: the entry's files, when there are several (default ``[path]``).
        sidecar: the record that vouches for them (default ``path`` with ``.json``).
    """
    files = [Path(f) for f in files] if files is not None else [Path(path)]
    sidecar = Path(sidecar) if sidecar is not None else Path(path).with_suffix(".json")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    try:
        record = read_json_file(sidecar)  # a regular file of at most 16 MiB, else unreadable
        recorded_key, recorded = record["key"], record["files"]
        same_key = _canonical(recorded_key) == _canonical(key)
    except FileNotFoundError:
        return f"its sidecar {sidecar.name} is missing"
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return f"its sidecar {sidecar.name} is unreadable or incomplete"
    if not same_key:
        return "it was computed for another key (other model, inputs, parameters or code)"
    for file in files:
        entry = recorded.get(file.name) if isinstance(recorded, dict) else None
        if not isinstance(entry, dict) or "bytes" not in entry or "sha256" not in entry:
            return f"its sidecar {sidecar.name} does not vouch for {file.name}"
        if file.stat().st_size != entry["bytes"]:
            return (f"{file.name} is {file.stat().st_size} bytes, {entry['bytes']} were written "
                    "(truncated or replaced)")
        if sha256_file(file) != entry["sha256"]:
            return f"{file.name} differs from the one written (sha256 mismatch: corrupted)"
    return None


def cached(cache_dir: str | Path | None, key: Mapping,
           compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Return the cached frame for ``key``, computing and saving it first if needed.

    A cached file is used only when :func:`verify_entry` finds it sound; otherwise it is
    recomputed (a :class:`CacheWarning` says why, unless the file simply is not there yet) and
    replaced. If the cache folder cannot be written (read-only, disk full), the computed frame
    is returned anyway with a :class:`CacheWarning`: the work is never lost.
    ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return compute()
    path = cache_path(cache_dir, key)
    reason = verify_entry(path, key)
    if reason is None:
        try:
            return load_frame(path)
        except Exception as error:  # checksum fine but unreadable: a writer bug; recompute
            reason = f"it cannot be read ({type(error).__name__}: {error})"
    if path.exists():
        warnings.warn(f"recomputing {path.name}: {reason}", CacheWarning, stacklevel=2)
    frame = compute()
    try:
        save_frame(frame, path, provenance=key)
    except WRITE_ERRORS as error:
        warnings.warn(f"results cache {cache_dir} cannot be written ({error_text(error)}); "
                      "continuing without it: this result will be recomputed next time",
                      CacheWarning, stacklevel=2)
    return frame
