"""Results cache: one Parquet file per (model, revision, inputs, parameters, code fingerprint).

Files are written atomically (temp file in the same folder, then rename), so an interrupted run
leaves either a complete result or none, and a rerun recomputes only what is missing. The key
holds :func:`memrecall._io.code_fingerprint` (a hash of the package's source), so after an edit
to the lens or the sweep the results are recomputed, not reused. A JSON sidecar records the
provenance (model, revision, dtype, input checksum, parameters, code fingerprint). No pickles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__, lens, lenses
from ._io import atomic_write, atomic_write_text, code_fingerprint, slug
from .models import LM

__all__ = [
    "ARRAY_COLUMNS",
    "cache_path",
    "cached",
    "cached_lens",
    "cached_project",
    "frame_sha256",
    "load_frame",
    "result_key",
    "save_frame",
]

ARRAY_COLUMNS = ("pred_rank", "pred_prob", "target_rank", "target_prob")


def frame_sha256(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A checksum of the inputs that determine a result (by default every column, as text)."""
    columns = columns or list(frame.columns)
    payload = frame[columns].astype(str).to_csv(index=False).encode()
    return hashlib.sha256(payload).hexdigest()


def result_key(lm: LM, inputs_sha256: str, kind: str, **params) -> dict:
    """Everything a cached result depends on, the package's source included."""
    return {"kind": kind, **lm.provenance(), "inputs_sha256": inputs_sha256,
            "params": params, "memrecall": __version__, "code_fingerprint": code_fingerprint()}


def cache_path(cache_dir: str | Path, key: Mapping) -> Path:
    """Where the result for ``key`` lives: readable prefix plus a hash of the whole key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    name = f"{slug(str(key['model']))}__{slug(key['kind'])}__{digest[:16]}.parquet"
    return Path(cache_dir) / name


def save_frame(frame: pd.DataFrame, path: str | Path, provenance: Mapping | None = None) -> None:
    """Write ``frame`` (numpy-array cells allowed) to Parquet atomically, provenance beside it."""
    path = Path(path)
    if provenance is not None:
        atomic_write_text(path.with_suffix(".json"),
                          json.dumps(provenance, indent=2, sort_keys=True, default=str))
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


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
    """:func:`memrecall.project` through the cache, keyed by model, probes and parameters.

    A fitted ``lens`` adds its kind and fingerprint to the key; the logit lens adds nothing, so
    its results are the ones every other notebook reads.
    """
    columns = [c for c in ("prompt", "target_token") if c in probes.columns]
    lens_key = project_kwargs["lens"].cache_key() if project_kwargs.get("lens") else {}
    key = result_key(lm, frame_sha256(probes, columns), "project", **lens_key)
    return cached(cache_dir, key, lambda: lens.project(lm, probes, **project_kwargs))


def cached_lens(cache_dir: str | Path | None, key: Mapping, lm: LM,
                fit: Callable[[], lenses.AffineLens]) -> lenses.AffineLens:
    """Return the fitted lens for ``key``, fitting and saving it first if it is missing.

    A lens read back is checked against ``lm``. It lives beside the cached frames as
    ``<name>.safetensors`` and ``<name>.json`` (its metadata: model, revision, code
    fingerprint, data and its sha256, seed, hyperparameters), under the name
    :func:`cache_path` gives ``key``. ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return fit()
    stem = cache_path(cache_dir, key).with_suffix("")
    if all(path.exists() for path in lenses.lens_files(stem)):
        return lenses.load_lens(stem, lm)
    fitted = fit()
    fitted.save(stem)
    return fitted
