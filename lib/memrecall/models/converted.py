"""A model kept converted on disk (a dequantised GGUF): verified by its manifest, or redone.

The manifest lists every file of the folder with its size and sha256; a folder it does not
vouch for, whole, is converted again (with a warning) and replaced atomically.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .._io import (
    WRITE_ERRORS,
    CacheWarning,
    atomic_write_dir,
    error_text,
    read_json_file,
    sha256_file,
)
from .pretrained import from_pretrained

__all__ = ["MANIFEST", "converted_model", "manifest_problem", "safetensors_problem",
           "write_manifest"]


MANIFEST = "memrecall-manifest.json"
"""In a converted model's folder: every other file's size and sha256, written at conversion."""


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a ``.safetensors`` file's framing (truncated, bad header), or None.

    Reads only the header: 8 bytes of header length, the JSON header, then the data, whose
    length the header's offsets fix exactly.
    """
    size = file.stat().st_size
    try:
        with open(file, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > size - 8:
                return f"{file}: truncated or not safetensors ({size} bytes, header says more)"
            header = json.loads(fh.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, RecursionError):
        return f"{file}: not a readable safetensors file (bad header)"
    if size != 8 + header_len + end:
        return f"{file}: {size} bytes where its header says {8 + header_len + end} (truncated?)"
    return None


def _entry_ok(name: object, entry: object) -> bool:
    """Whether one manifest entry has the shape ``write_manifest`` gives it."""
    return (isinstance(name, str) and bool(name) and not Path(name).is_absolute()
            and ".." not in Path(name).parts and isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int) and not isinstance(entry["bytes"], bool)
            and entry["bytes"] >= 0 and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and all(c in "0123456789abcdef" for c in entry["sha256"]))


def manifest_problem(folder: Path) -> str | None:
    """What keeps ``folder``'s manifest from vouching for every file in it, or None.

    The manifest must be a regular JSON file of at most 16 MiB listing every file of the folder
    (weights, config, tokenizer) with its size and sha256, and each must match: an unreadable
    manifest, an empty one, a file it does not list, or an entry of another shape vouches for
    nothing.
    """
    manifest = folder / MANIFEST
    try:
        files = read_json_file(manifest)["files"]
    except FileNotFoundError:
        return f"{manifest} is missing (an old or interrupted conversion)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{manifest} is unreadable"
    if not isinstance(files, dict):
        return f"{manifest} is malformed (its files are not a mapping)"
    if not files:
        return f"{manifest} is empty: it lists no files, so it vouches for none"
    for name, entry in sorted(files.items(), key=lambda item: str(item[0])):
        if not _entry_ok(name, entry):
            return f"{manifest} is malformed: a malformed entry for {name!r}: {entry!r:.80}"
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and p.name != MANIFEST}
    unlisted = sorted(present - set(files))
    if unlisted:
        return (f"{folder / unlisted[0]} is not in {MANIFEST}"
                + (f" (nor {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""))
    if not any(name.endswith(".safetensors") for name in files) or "config.json" not in files:
        return f"{manifest} is incomplete: it lists no weights or no config.json"
    for name, entry in sorted(files.items()):
        file = folder / name
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != entry["bytes"]:
            return f"{file} is {file.stat().st_size} bytes, {entry['bytes']} were written"
        if sha256_file(file) != entry["sha256"]:
            return f"{file} differs from the converted one (sha256 mismatch)"
    return None


def write_manifest(folder: Path) -> None:
    """Vouch for every file of ``folder`` (written before it): its size and sha256."""
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size,
                                                "sha256": sha256_file(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=2, sort_keys=True))


def _discard(folder: Path) -> None:
    """Move ``folder`` aside and delete it (a concurrent reader keeps its open files)."""
    aside = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
    try:
        folder.rename(aside / folder.name)
    except OSError:
        pass
    shutil.rmtree(aside, ignore_errors=True)


def converted_model(folder: str | Path, convert: Callable[[], tuple], dtype: torch.dtype):
    """A model kept converted in ``folder``: verified and loaded, or converted and saved.

    The folder is used only when every file matches the manifest written at conversion
    (size and sha256); otherwise a :class:`~memrecall._io.CacheWarning` names the file and
    the model is converted again and the folder replaced (atomically: a temp folder renamed
    into place). A cache folder that cannot be written still gives the converted model.

    Args:
        folder: where the converted model lives.
        convert: returns ``(model, tokenizer)`` in float32 (e.g. a dequantised GGUF).
        dtype: the dtype of the returned model.

    Returns:
        ``(model, tokenizer)``.
    """
    folder = Path(folder)
    if folder.exists():
        problem = manifest_problem(folder)
        if problem is None:
            try:
                return from_pretrained(folder, dtype, local_only=True, strict=True)
            except Exception as error:  # files as written, yet unreadable: convert again
                problem = f"{folder} cannot be loaded ({type(error).__name__}: {error})"
        warnings.warn(f"reconverting {folder.name}: {problem}", CacheWarning, stacklevel=2)
        _discard(folder)
    model, tokenizer = convert()

    def save(temp: Path) -> None:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        write_manifest(temp)

    try:
        atomic_write_dir(folder, save)
    except WRITE_ERRORS as error:  # another process was first, a read-only or full disk: usable
        if not folder.exists():
            warnings.warn(f"cannot keep the converted model in {folder} ({error_text(error)}); "
                          "it will be converted again next time", CacheWarning, stacklevel=2)
    return model.to(dtype), tokenizer
