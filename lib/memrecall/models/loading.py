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

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .._io import (
    is_hub_id,
    sha256_file,
    slug,
)
from ..runmode import plain_progress
from .converted import MANIFEST, converted_model, safetensors_problem
from .finite import NonFiniteError, check_finite_weights
from .lm import LM, state_fingerprint
from .packaged import (
    ChecksumMismatchError,
    PackagedGGUF,
    converted_models_dir,
    reinstall_command,
)
from .placement import DeviceMap, place, resolve_dtype
from .pretrained import ModelFolderError, from_pretrained
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
                f"{name}: {gguf} has sha256 {actual}, not the pinned {packaged.sha256}; "
                f"reinstall the package: `{reinstall_command([packaged.distribution])}`"
            )
        model, tokenizer = from_pretrained(gguf.parent, torch.float32, gguf_file=gguf.name,
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


def _check_gguf_file(path: Path) -> None:
    """Fail at once, naming the file, when ``path`` is not a GGUF file (missing, empty...)."""
    if not path.is_file():
        raise ModelFolderError(f"{path}: no such .gguf file" + (
            " (it is a folder)" if path.is_dir() else ""))
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as error:
        raise ModelFolderError(f"{path}: cannot read it ({error.strerror or error})") from error
    if not magic:
        raise ModelFolderError(f"{path} is empty (0 bytes), not a GGUF model (an interrupted "
                               "download or copy?)")
    if magic != b"GGUF":
        raise ModelFolderError(f"{path} is not a GGUF file (it does not start with 'GGUF'; "
                               f"{path.stat().st_size} bytes)")


def _load_local_dir(path: Path, dtype: torch.dtype):
    _check_model_folder(path)
    try:
        return from_pretrained(path, dtype, local_only=True, strict=True)
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
        return from_pretrained(hub_id, dtype, revision, local_only=True)
    except OSError:
        pass
    if _hub_offline():
        raise _hub_unreachable_error(hub_id, "HF_HUB_OFFLINE is set and it is not in the cache")
    if not _hub_reachable():  # fail in seconds instead of waiting on retries
        raise _hub_unreachable_error(hub_id, f"{HUB_HOST} is unreachable from this machine")
    return from_pretrained(hub_id, dtype, revision)


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
        _check_gguf_file(path)
        model, tokenizer = from_pretrained(path.parent, dtype, gguf_file=path.name,
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
