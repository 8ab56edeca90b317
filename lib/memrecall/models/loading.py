"""Loading a model by registry name, hub id, local folder or ``.gguf`` file.

Packaged GGUF models (:mod:`memrecall.models.packaged`) are checked against their pinned sha256,
dequantised once and kept as safetensors (:func:`converted_models_dir`); hub models come from
the local Hugging Face cache when they are there, and a hub that cannot be reached fails in
seconds with a message naming the offline profile. A model read from a GGUF file is identified
by the file's sha256 (:attr:`LM.weights`), any other by a sampled hash of its state dict.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from .._io import atomic_write_dir, is_hub_id, sha256_file, slug
from ..runmode import plain_progress
from .architectures import UnsupportedArchitectureError, supported_model_types
from .lm import LM
from .packaged import ChecksumMismatchError, PackagedGGUF, converted_models_dir
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


def _load_packaged_gguf(name: str, packaged: PackagedGGUF, dtype: torch.dtype):
    """Load a packaged GGUF model, dequantising it only the first time.

    The GGUF file is checked against its pinned sha256 before it is converted, and the
    converted folder is named by that sha256, so what is reloaded is what was checked.
    Dequantising Gemma 3 270M takes about a minute on a laptop CPU; the float32 result is
    saved as safetensors (atomically: a temp folder renamed into place) and reloaded in seconds.

    Raises:
        ChecksumMismatchError: the package's GGUF file is not the pinned one.
    """
    folder = converted_models_dir() / slug(f"{name}-{packaged.sha256[:16]}", max_len=None)
    if (folder / "config.json").is_file():
        return _from_pretrained(folder, dtype, local_only=True)
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
         dtype: torch.dtype | str | None = None, revision: str | None = None) -> LM:
    """Load a model by registry name, hub id, local folder or ``.gguf`` file.

    Args:
        name_or_path: a key of :data:`REGISTRY` (``"gemma-3-270m"``...), a hub id
            (``"gpt2"``), a folder with ``config.json`` + safetensors, or a ``.gguf`` file.
        device: defaults to CUDA when available, else CPU.
        dtype: defaults to float32 (GGUF weights are dequantised to it).
        revision: hub revision (commit, tag or branch) to pin.

    Raises:
        UnknownModelError: not registered, not a path, and not shaped like a hub id.
        HubUnreachableError: a hub model that cannot be fetched (the message names
            ``PROFILE=offline``).
    """
    with _quiet_loading():
        return _load(str(name_or_path),
                     torch.device(device) if device is not None else default_device(),
                     getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32),
                     revision)


def _load(name: str, device: torch.device, dtype: torch.dtype, revision: str | None) -> LM:
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
    elif path.suffix == ".gguf" and path.is_file():
        model, tokenizer = _from_pretrained(path.parent, dtype, gguf_file=path.name,
                                            local_only=True)
        pinned = f"file:{path.name}"
        weights = f"gguf-sha256:{sha256_file(path)}"
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
    return LM(model=model.to(device), tokenizer=tokenizer, name=name, revision=pinned,
              weights=weights)
