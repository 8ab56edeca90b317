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

import numpy as np
import pandas as pd

from . import __version__, lens, lenses
from ._io import (
    CacheWarning,
    atomic_write,
    atomic_write_text,
    code_fingerprint,
    sha256_file,
    slug,
)
from .models import LM

__all__ = [
    "ARRAY_COLUMNS",
    "CacheWarning",
    "cache_path",
    "cached",
    "cached_lens",
    "cached_project",
    "frame_sha256",
    "load_frame",
    "result_key",
    "save_frame",
    "verify_entry",
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
    """Write ``frame`` (numpy-array cells allowed) to Parquet atomically, a sidecar beside it.

    The sidecar (``path`` with ``.json``) holds ``provenance`` (the cache key) and the sha256,
    size and row count of the Parquet file. It is written last, so it vouches only for a
    complete file; :func:`verify_entry` checks it before a cached file is used.
    """
    path = Path(path)
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))
    sidecar = {"key": dict(provenance or {}), "sha256": sha256_file(path),
               "bytes": path.stat().st_size, "rows": len(frame)}
    atomic_write_text(path.with_suffix(".json"),
                      json.dumps(sidecar, indent=2, sort_keys=True, default=str))


def load_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written by :func:`save_frame`; per-layer cells come back as numpy arrays."""
    frame = pd.read_parquet(path)
    for column in ARRAY_COLUMNS:
        if column in frame.columns:
            frame[column] = [np.asarray(cell) for cell in frame[column]]
    return frame


def _canonical(key: Mapping) -> str:
    """``key`` as its JSON round trip writes it (tuples as lists, keys as strings), sorted."""
    return json.dumps(json.loads(json.dumps(key, default=str)), sort_keys=True)


def verify_entry(path: str | Path, key: Mapping) -> str | None:
    """Why the cached file at ``path`` must not be used for ``key``; None when it is sound.

    Checks, in order: the file and its sidecar exist, the sidecar parses, its key is ``key``
    (the whole key, not only the hash in the file name), and the file's size and sha256 are the
    ones recorded when it was written.
    """
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    if not path.is_file():
        return "no cached file"
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        recorded_key, recorded_sha, size = sidecar["key"], sidecar["sha256"], sidecar["bytes"]
    except FileNotFoundError:
        return f"its sidecar {sidecar_path.name} is missing"
    except (OSError, ValueError, TypeError, KeyError):
        return f"its sidecar {sidecar_path.name} is unreadable or incomplete"
    if _canonical(recorded_key) != _canonical(key):
        return "it was computed for another key (other model, inputs, parameters or code)"
    if path.stat().st_size != size:
        return f"it is {path.stat().st_size} bytes, {size} were written (truncated or replaced)"
    if sha256_file(path) != recorded_sha:
        return "its sha256 differs from the one recorded when it was written (corrupted)"
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
    except OSError as error:
        warnings.warn(f"results cache {cache_dir} cannot be written ({error.strerror or error}); "
                      "continuing without it: this result will be recomputed next time",
                      CacheWarning, stacklevel=2)
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
    frame = cached(cache_dir, key, lambda: lens.project(lm, probes, **project_kwargs))
    frame.index = probes.index  # Parquet stores no index: rows line up with the probes'
    return frame


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
