"""Loading a model by registry name, hub id, local folder or ``.gguf`` file.

Packaged GGUF models are dequantised once and kept as safetensors
(:func:`converted_models_dir`); hub models come from the local Hugging Face cache when they are
there, and a hub that cannot be reached fails in seconds with a message naming the offline
profile.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from .._io import atomic_write_dir, is_hub_id, slug
from ..runmode import plain_progress
from .architectures import UnsupportedArchitectureError, supported_model_types
from .lm import LM
from .placement import DeviceMap, place, resolve_dtype
from .registry import REGISTRY, package_version
from .tiny import build_tiny

__all__ = [
    "HUB_HOST",
    "HubUnreachableError",
    "UnknownModelError",
    "converted_models_dir",
    "default_device",
    "load",
    "unavailable_hub_models",
]

HUB_HOST = "huggingface.co"


class UnknownModelError(ValueError):
    """A name that is neither registered, a local path, nor a hub id."""


class HubUnreachableError(OSError):
    """A hub model was asked for but the Hugging Face hub cannot be reached."""


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
                     gguf_file: str | None = None, local_only: bool = False):
    from transformers import AutoConfig

    common = dict(revision=revision, trust_remote_code=False, local_files_only=local_only)
    if gguf_file:
        common["gguf_file"] = gguf_file
    config = AutoConfig.from_pretrained(source, **common)
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, **common)
    weights = {} if gguf_file else {"use_safetensors": True}  # never unpickle a checkpoint
    model = _auto_class(config).from_pretrained(source, dtype=dtype, **weights, **common)
    return model, tokenizer


def converted_models_dir() -> Path:
    """Where dequantised GGUF models are kept as safetensors (``$MEMRECALL_CACHE/models``)."""
    root = os.environ.get("MEMRECALL_CACHE") or Path.home() / ".cache" / "memrecall"
    return Path(root) / "models"


def _load_packaged_gguf(name: str, pinned: str, locate: Callable[[], Path], dtype: torch.dtype):
    """Load a packaged GGUF model, dequantising it only the first time.

    Dequantising Gemma 3 270M takes about a minute on a laptop CPU; the float32 result is
    saved as safetensors (atomically: a temp folder renamed into place) and reloaded in seconds.
    """
    folder = converted_models_dir() / slug(f"{name}-{pinned}", max_len=None)
    if (folder / "config.json").is_file():
        return _from_pretrained(folder, dtype, local_only=True)
    gguf = locate()
    model, tokenizer = _from_pretrained(gguf.parent, torch.float32, gguf_file=gguf.name,
                                        local_only=True)
    # The weights are plain float tensors now; drop the GGUF marker that blocks saving.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def save(temp: Path) -> None:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)

    try:
        atomic_write_dir(folder, save)
    except OSError:  # another process got there first, or the disk is read-only: still usable
        pass
    return model.to(dtype), tokenizer


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
        f"mr.load('gemma-3-270m') / mr.load('smollm2-135m'))."
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
        device: defaults to CUDA when available, else CPU (ignored with ``device_map``).
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
        HubUnreachableError: a hub model that cannot be fetched (the message names
            ``PROFILE=offline``).
    """
    dtype = resolve_dtype(dtype)
    device = torch.device(device) if device is not None else default_device()
    name = str(name_or_path)
    with _quiet_loading():
        model, tokenizer, pinned = _load(name, dtype, revision)
    model = place(model, device, device_map, offload_folder)
    return LM(model=model, tokenizer=tokenizer, name=name, revision=pinned)


def _load(name: str, dtype: torch.dtype, revision: str | None):
    """Model (on CPU, in ``dtype``), tokenizer and what pins the weights."""
    entry = REGISTRY.get(name)
    path = Path(name).expanduser()

    if entry is not None and entry.tiny:
        model, tokenizer = build_tiny(name)
        model = model.to(dtype)
        pinned = "seed=0"
    elif entry is not None and entry.gguf is not None:
        distribution, locate = entry.gguf
        pinned = package_version(distribution)
        model, tokenizer = _load_packaged_gguf(name, pinned, locate, dtype)
    elif entry is not None:
        model, tokenizer = _load_hub(entry.hub_id, dtype, revision)
        pinned = revision or getattr(model.config, "_commit_hash", None) or "main"
    elif path.suffix == ".gguf" and path.is_file():
        model, tokenizer = _from_pretrained(path.parent, dtype, gguf_file=path.name,
                                            local_only=True)
        pinned = f"file:{path.name}"
    elif path.is_dir():
        model, tokenizer = _from_pretrained(path, dtype, local_only=True)
        pinned = f"dir:{path.resolve()}"
    elif is_hub_id(name):
        model, tokenizer = _load_hub(name, dtype, revision)
        pinned = revision or getattr(model.config, "_commit_hash", None) or "main"
    else:
        raise UnknownModelError(
            f"{name!r} is not a registered model, an existing folder or .gguf file, or a hub id "
            f"('owner/name', e.g. 'openai-community/gpt2'). Registered: {', '.join(REGISTRY)}"
        )
    return model, tokenizer, pinned
