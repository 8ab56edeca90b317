"""Results cache: one Parquet file per (model, revision, inputs, parameters, package version).

Files are written atomically (temp file in the same folder, then rename), so an interrupted run
leaves either a complete result or none, and a rerun recomputes only what is missing. A JSON
sidecar records the provenance (model, revision, dtype, input checksum, parameters). No pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .models import LM

ARRAY_COLUMNS = ("pred_rank", "pred_prob", "target_rank", "target_prob")


def frame_sha256(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A checksum of the inputs that determine a result (by default every column, as text)."""
    columns = columns or list(frame.columns)
    payload = frame[columns].astype(str).to_csv(index=False).encode()
    return hashlib.sha256(payload).hexdigest()


def result_key(lm: LM, inputs_sha256: str, kind: str, **params) -> dict:
    """Everything a cached result depends on."""
    return {"kind": kind, **lm.provenance(), "inputs_sha256": inputs_sha256,
            "params": params, "memrecall": __version__}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60]


def cache_path(cache_dir: str | Path, key: Mapping) -> Path:
    """Where the result for ``key`` lives: readable prefix plus a hash of the whole key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{_slug(str(key['model']))}__{_slug(key['kind'])}__{digest[:16]}.parquet"
    return Path(cache_dir) / name


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temp))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_frame(frame: pd.DataFrame, path: str | Path, provenance: Mapping | None = None) -> None:
    """Write ``frame`` (numpy-array cells allowed) to Parquet atomically, provenance beside it."""
    path = Path(path)
    if provenance is not None:
        _atomic_write(path.with_suffix(".json"), lambda p: p.write_text(
            json.dumps(provenance, indent=2, sort_keys=True, default=str)))
    _atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def load_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written by :func:`save_frame`; per-layer cells come back as numpy arrays."""
    frame = pd.read_parquet(path)
    for column in ARRAY_COLUMNS:
        if column in frame.columns:
            frame[column] = [np.asarray(cell) for cell in frame[column]]
    return frame


def cached(cache_dir: str | Path | None, key: Mapping,
           compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Return the cached frame for ``key``, computing and saving it first if it is missing.

    ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return compute()
    path = cache_path(cache_dir, key)
    if path.exists():
        return load_frame(path)
    frame = compute()
    save_frame(frame, path, provenance=key)
    return frame


def cached_project(lm: LM, probes: pd.DataFrame, cache_dir: str | Path | None,
                   **project_kwargs) -> pd.DataFrame:
    """:func:`memrecall.project` through the cache, keyed by model, probes and parameters."""
    from .lens import project

    columns = [c for c in ("prompt", "target_token") if c in probes.columns]
    key = result_key(lm, frame_sha256(probes, columns), "project")
    return cached(cache_dir, key, lambda: project(lm, probes, **project_kwargs))
