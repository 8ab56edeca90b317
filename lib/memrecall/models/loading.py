"""Loading a model by registry name, hub id, local folder or ``.gguf`` file.

Packaged GGUF models (:mod:`memrecall.models.packaged`) are checked against their pinned sha256,
dequantised once and kept as safetensors (:func:`converted_models_dir`) with a manifest of every
file's sha256, verified on each load (a tampered or truncated file is reconverted, with a warning
naming it); hub models come from the local Hugging Face cache when they are there, and a hub that
cannot be reached fails in seconds with a message naming the offline profile. A local folder that
is not a complete model (no config, no tokenizer, no or truncated weights) fails at once with a
message naming the file; one whose files lack a tensor the config calls for (or hold one it
does not) is refused, never completed with random weights. A model read from a GGUF file is
identified by the file's sha256 (:attr:`LM.weights`), any other by a sampled hash of its state
dict.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from .._io import CacheWarning, atomic_write_dir, is_hub_id, sha256_file, slug
from ..runmode import plain_progress
from .architectures import UnsupportedArchitectureError, supported_model_types
from .finite import NonFiniteError, check_finite_weights
from .lm import LM, state_fingerprint
from .packaged import ChecksumMismatchError, PackagedGGUF, converted_models_dir
from .placement import DeviceMap, place, resolve_dtype
from .registry import REGISTRY, package_version
from .tiny import build_tiny

__all__ = [
    "HUB_HOST",
    "MANIFEST",
    "DeviceUnavailableError",
    "HubUnreachableError",
    "ModelFolderError",
    "NonFiniteError",
    "UnknownModelError",
    "check_device",
    "converted_model",
    "converted_models_dir",
    "default_device",
    "load",
    "safetensors_problem",
    "unavailable_hub_models",
]

HUB_HOST = "huggingface.co"


class UnknownModelError(ValueError):
    """A name that is neither registered, a local path, nor a hub id."""


class HubUnreachableError(OSError):
    """A hub model was asked for but the Hugging Face hub cannot be reached."""


class ModelFolderError(OSError):
    """A local model folder (or ``.gguf`` path) is missing, incomplete or unreadable."""


class DeviceUnavailableError(RuntimeError):
    """The device asked for (``cuda``) is not available on this machine."""


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device` (default :func:`default_device`), checked to exist.

    Call it before any work: asking for CUDA on a machine without a GPU fails here, at once.

    Raises:
        DeviceUnavailableError: CUDA asked for but no CUDA GPU is visible (or not that index).
        ValueError: not a device name torch knows.
    """
    if device is None:
        return default_device()
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {str(device)!r}: use 'cpu' or 'cuda'") from error
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceUnavailableError(
                f"device {str(device)!r} asked for, but this machine has no CUDA GPU visible to "
                "PyTorch; run on the CPU (DEVICE=cpu, or leave DEVICE unset)")
        if device.index is not None and device.index >= count:
            raise DeviceUnavailableError(
                f"device {str(device)!r} asked for, but only {count} CUDA GPU(s) are visible")
    return device


def _auto_class(config) -> type:
    model_type = getattr(config, "model_type", "")
    if model_type not in supported_model_types():
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not supported; supported: "
            f"{', '.join(supported_model_types())}"
        )
    masked = model_type == "bert"
    return AutoModelForMaskedLM if masked else AutoModelForCausalLM


def _from_pretrained(source: str | Path, dtype: torch.dtype, revision: str | None = None,
                     gguf_file: str | None = None, local_only: bool = False,
                     strict: bool = False):
    """Model and tokenizer; ``strict``: every tensor of the model read from the files.

    Raises:
        ModelFolderError: with ``strict``, a tensor the model needs is not in the files, a tensor
            of the files is not in the model, or its shape differs (:func:`_check_loading_info`).
    """
    from transformers import AutoConfig

    common = dict(revision=revision, trust_remote_code=False, local_files_only=local_only)
    if gguf_file:
        common["gguf_file"] = gguf_file
    config = AutoConfig.from_pretrained(source, **common)
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, **common)
    weights = {} if gguf_file else {"use_safetensors": True}  # never unpickle a checkpoint
    if not strict:
        model = _auto_class(config).from_pretrained(source, dtype=dtype, **weights, **common)
        return model, tokenizer
    model, info = _auto_class(config).from_pretrained(source, dtype=dtype, **weights, **common,
                                                      output_loading_info=True)
    _check_loading_info(model, info, source)
    return model, tokenizer


def _tied_keys(model) -> set[str]:
    """Parameters legitimately absent from the files: tied to another one (lm_head to wte)."""
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None:  # older transformers: the class's list, when the config ties them
        config = model.config.get_text_config()
        tied = (getattr(model, "_tied_weights_keys", None) or []
                if getattr(config, "tie_word_embeddings", False) else [])
    return set(tied)


def _check_loading_info(model, info: dict, source: str | Path) -> None:
    """Refuse a model some of whose tensors were not read from the files (no random weights).

    Raises:
        ModelFolderError: names ``source``, how many tensors are missing (they would be
            initialised at random), unexpected (ignored) or mis-shaped, and the first few.
    """
    tied = _tied_keys(model)
    problems = {
        "missing (would be initialised at random)":
            sorted(k for k in info.get("missing_keys", ()) if k not in tied),
        "unexpected (in the files but not in the model)": sorted(info.get("unexpected_keys", ())),
        "of the wrong shape": sorted(str(k[0] if isinstance(k, tuple | list) else k)
                                     for k in info.get("mismatched_keys", ())),
    }
    found = [f"{len(keys)} {what}: {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
             for what, keys in problems.items() if keys]
    if found:
        raise ModelFolderError(
            f"{source}: the weights do not match the model its config.json describes; tensors "
            + "; ".join(found) + ". memrecall loads a model only when every tensor comes from "
            "its files: check num_hidden_layers in config.json, or save the model again with "
            "save_pretrained")


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
    except (struct.error, ValueError, KeyError, TypeError, IndexError):
        return f"{file}: not a readable safetensors file (bad header)"
    if size != 8 + header_len + end:
        return f"{file}: {size} bytes where its header says {8 + header_len + end} (truncated?)"
    return None


def _entry_ok(name: object, entry: object) -> bool:
    """Whether one manifest entry has the shape ``_write_manifest`` gives it."""
    return (isinstance(name, str) and bool(name) and not Path(name).is_absolute()
            and ".." not in Path(name).parts and isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int) and not isinstance(entry["bytes"], bool)
            and entry["bytes"] >= 0 and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and all(c in "0123456789abcdef" for c in entry["sha256"]))


def _manifest_problem(folder: Path) -> str | None:
    """What keeps ``folder``'s manifest from vouching for every file in it, or None.

    The manifest must list every file of the folder (weights, config, tokenizer) with its size
    and sha256, and each must match: an empty manifest, a file it does not list, or an entry of
    another shape vouches for nothing.
    """
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"{manifest} is missing (an old or interrupted conversion)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{manifest} is unreadable"
    if not isinstance(files, dict) or not files:
        return f"{manifest} lists no files, so it vouches for none"
    for name, entry in sorted(files.items(), key=lambda item: str(item[0])):
        if not _entry_ok(name, entry):
            return f"{manifest} has a malformed entry for {name!r}: {entry!r}"
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and p.name != MANIFEST}
    unlisted = sorted(present - set(files))
    if unlisted:
        return (f"{folder / unlisted[0]} is not in {MANIFEST}"
                + (f" (nor {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""))
    if not any(name.endswith(".safetensors") for name in files) or "config.json" not in files:
        return f"{manifest} lists no weights or no config.json"
    for name, entry in sorted(files.items()):
        file = folder / name
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != entry["bytes"]:
            return f"{file} is {file.stat().st_size} bytes, {entry['bytes']} were written"
        if sha256_file(file) != entry["sha256"]:
            return f"{file} differs from the converted one (sha256 mismatch)"
    return None


def _write_manifest(folder: Path) -> None:
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
        problem = _manifest_problem(folder)
        if problem is None:
            try:
                return _from_pretrained(folder, dtype, local_only=True, strict=True)
            except Exception as error:  # files as written, yet unreadable: convert again
                problem = f"{folder} cannot be loaded ({type(error).__name__}: {error})"
        warnings.warn(f"reconverting {folder.name}: {problem}", CacheWarning, stacklevel=2)
        _discard(folder)
    model, tokenizer = convert()

    def save(temp: Path) -> None:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        _write_manifest(temp)

    try:
        atomic_write_dir(folder, save)
    except OSError as error:  # another process got there first, or a read-only disk: usable
        if not folder.exists():
            warnings.warn(f"cannot keep the converted model in {folder} ({error}); it will be "
                          "converted again next time", CacheWarning, stacklevel=2)
    return model.to(dtype), tokenizer


def _load_packaged_gguf(name: str, packaged: PackagedGGUF, dtype: torch.dtype):
    """Load a packaged GGUF model, dequantising it only the first time.

    The GGUF file is checked against its pinned sha256 before it is converted, and the
    converted folder is named by that sha256, so what is reloaded is what was checked.
    Dequantising Gemma 3 270M takes about a minute on a laptop CPU; the float32 result is
    kept as safetensors (:func:`converted_model`) and reloaded in seconds.

    Raises:
        ChecksumMismatchError: the package's GGUF file is not the pinned one.
    """
    def convert():
        gguf = packaged.locate()
        actual = sha256_file(gguf)
        if actual != packaged.sha256:
            raise ChecksumMismatchError(
                f"{name}: {gguf} has sha256 {actual}, not the pinned {packaged.sha256}; install "
                f"the pinned {packaged.distribution} (`make env`)"
            )
        model, tokenizer = _from_pretrained(gguf.parent, torch.float32, gguf_file=gguf.name,
                                            local_only=True)
        # The weights are plain float tensors now; drop the GGUF marker that blocks saving.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, tokenizer

    folder = converted_models_dir() / slug(f"{name}-{packaged.sha256[:16]}", max_len=None)
    return converted_model(folder, convert, dtype)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "spiece.model", "sentencepiece.bpe.model")


def _check_model_folder(path: Path) -> None:
    """Fail at once, naming the file, when ``path`` is not a complete model folder."""
    present = sorted(p.name for p in path.iterdir())
    if not present:
        raise ModelFolderError(f"{path} is an empty folder, not a model (a model folder holds "
                               "config.json, model.safetensors and the tokenizer's files)")
    if "config.json" not in present:
        raise ModelFolderError(f"{path} has no config.json, so it is not a Hugging Face model "
                               f"folder (it holds: {', '.join(present[:10])})")
    if not any(name in present for name in _TOKENIZER_FILES):
        raise ModelFolderError(f"{path} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}); "
                               "save it beside the model: tokenizer.save_pretrained(folder)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ModelFolderError(f"{path} has no .safetensors weights (memrecall never unpickles "
                               "a .bin checkpoint; convert it with save_pretrained)")
    for file in weights:
        problem = safetensors_problem(file)
        if problem:
            raise ModelFolderError(problem)


def _load_local_dir(path: Path, dtype: torch.dtype):
    _check_model_folder(path)
    try:
        return _from_pretrained(path, dtype, local_only=True, strict=True)
    except ModelFolderError:
        raise
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelFolderError(f"cannot load the model in {path}: {type(error).__name__}: "
                               f"{error}") from error


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def unavailable_hub_models(names: list[str]) -> list[str]:
    """Of these registry names or hub ids, those that can be neither fetched nor found cached.

    Answers in seconds without downloading anything: an empty list means all can be loaded.
    """
    from huggingface_hub import try_to_load_from_cache

    ids = {name: REGISTRY[name].hub_id if name in REGISTRY else name for name in names}
    uncached = [name for name, hub_id in ids.items()
                if not isinstance(try_to_load_from_cache(hub_id, "config.json"), str)]
    if uncached and (_hub_offline() or not _hub_reachable()):
        return uncached
    return []


def _hub_unreachable_error(hub_id: str, reason: str) -> HubUnreachableError:
    return HubUnreachableError(
        f"cannot load {hub_id!r} from the Hugging Face hub: {reason}. On a machine without the "
        "hub, use the packaged models: `make reproduce PROFILE=offline` (or "
        f"mr.load('gemma-3-270m'), mr.load('smollm2-135m'), mr.load('qwen2.5-coder-0.5b'))."
    )


def _load_hub(hub_id: str, dtype: torch.dtype, revision: str | None):
    try:  # a model already in the local Hugging Face cache needs no network
        return _from_pretrained(hub_id, dtype, revision, local_only=True)
    except OSError:
        pass
    if _hub_offline():
        raise _hub_unreachable_error(hub_id, "HF_HUB_OFFLINE is set and it is not in the cache")
    if not _hub_reachable():  # fail in seconds instead of waiting on retries
        raise _hub_unreachable_error(hub_id, f"{HUB_HOST} is unreachable from this machine")
    return _from_pretrained(hub_id, dtype, revision)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' loading bars in batch runs, where they would be stored as widgets."""
    from transformers.utils import logging as hf_logging

    if not plain_progress() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load(name_or_path: str | Path, device: str | torch.device | None = None,
         dtype: torch.dtype | str | None = None, revision: str | None = None, *,
         device_map: DeviceMap | None = None, offload_folder: str | Path | None = None) -> LM:
    """Load a model by registry name, hub id, local folder or ``.gguf`` file.

    Args:
        name_or_path: a key of :data:`REGISTRY` (``"gemma-3-270m"``...), a hub id
            (``"gpt2"``), a folder with ``config.json`` + safetensors, or a ``.gguf`` file.
        device: defaults to CUDA when available, else CPU; checked before any loading (ignored
            with ``device_map``).
        dtype: ``"float32"`` (default; GGUF weights are dequantised to it), ``"bfloat16"`` or
            ``"float16"``. The lens then computes logits in that dtype, as the model does, and
            reduces them in float32; the dtype is part of every cached result's key.
        revision: hub revision (commit, tag or branch) to pin.
        device_map: spread the blocks over several devices with ``accelerate``: ``"auto"``
            (balanced over the GPUs, then CPU, then disk) or a map of module names to devices
            (see :func:`memrecall.models.placement.place`). For models larger than one card.
        offload_folder: where a map's ``"disk"`` entries go.

    Raises:
        UnknownModelError: not registered, not a path, and not shaped like a hub id.
        ModelFolderError: a ``.gguf`` path that does not exist, or an incomplete model folder
            (names the missing or truncated file).
        DeviceUnavailableError: ``device="cuda"`` on a machine without a CUDA GPU.
        HubUnreachableError: a hub model that cannot be fetched (the message names
            ``PROFILE=offline``).
        NonFiniteError: a weight holds a NaN or inf (e.g. overflowed in float16; names the
            tensor).
    """
    dtype = resolve_dtype(dtype)
    device = check_device(device) if device_map is None else default_device()
    name = str(name_or_path)
    with _quiet_loading():
        model, tokenizer, pinned, weights = _load(name, dtype, revision)
    check_finite_weights(model, name)
    # identify the weights while they are all in memory: a device map may offload some
    weights = weights or state_fingerprint(model)
    model = place(model, device, device_map, offload_folder)
    return LM(model=model, tokenizer=tokenizer, name=name, revision=pinned, weights=weights)


def _load(name: str, dtype: torch.dtype, revision: str | None):
    """Model (on CPU, in ``dtype``), tokenizer, what pins the weights and what identifies them."""
    entry = REGISTRY.get(name)
    path = Path(name).expanduser()
    weights = ""  # identified by LM's state fingerprint unless a GGUF's sha256 is known

    if entry is not None and entry.tiny:
        model, tokenizer = build_tiny(name)
        model = model.to(dtype)
        pinned = "seed=0"
    elif entry is not None and entry.gguf is not None:
        pinned = package_version(entry.gguf.distribution)
        model, tokenizer = _load_packaged_gguf(name, entry.gguf, dtype)
        weights = f"gguf-sha256:{entry.gguf.sha256}"
    elif entry is not None:
        model, tokenizer = _load_hub(entry.hub_id, dtype, revision)
        pinned = revision or getattr(model.config, "_commit_hash", None) or "main"
    elif path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelFolderError(f"{path}: no such .gguf file" + (
                " (it is a folder)" if path.is_dir() else ""))
        model, tokenizer = _from_pretrained(path.parent, dtype, gguf_file=path.name,
                                            local_only=True)
        pinned = f"file:{path.name}"
        weights = f"gguf-sha256:{sha256_file(path)}"
    elif path.is_dir():
        model, tokenizer = _load_local_dir(path, dtype)
        pinned = f"dir:{path.resolve()}"
    elif is_hub_id(name):
        model, tokenizer = _load_hub(name, dtype, revision)
        pinned = revision or getattr(model.config, "_commit_hash", None) or "main"
    else:
        raise UnknownModelError(
            f"{name!r} is not a registered model, an existing folder or .gguf file, or a hub id "
            f"('owner/name', e.g. 'openai-community/gpt2'). Registered: {', '.join(REGISTRY)}"
        )
    return model, tokenizer, pinned, weights
