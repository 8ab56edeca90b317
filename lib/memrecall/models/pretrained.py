"""Loading saved weights strictly: every tensor present, none extra, none mis-shaped.

A folder whose weights do not match the model its config describes is refused (transformers
would re-initialise the missing tensors at random); tied weights are the one legitimate gap.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from .architectures import UnsupportedArchitectureError, supported_model_types

__all__ = ["ModelFolderError", "auto_class", "from_pretrained"]


class ModelFolderError(OSError):
    """A local model folder (or ``.gguf`` path) is missing, incomplete or unreadable."""


def auto_class(config) -> type:
    """The Auto class for ``config``: masked-LM models by their architecture, else causal."""
    model_type = getattr(config, "model_type", "")
    if model_type not in supported_model_types():
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not supported; supported: "
            f"{', '.join(supported_model_types())}"
        )
    masked = model_type == "bert"
    return AutoModelForMaskedLM if masked else AutoModelForCausalLM


def from_pretrained(source: str | Path, dtype: torch.dtype, revision: str | None = None,
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
        model = auto_class(config).from_pretrained(source, dtype=dtype, **weights, **common)
        return model, tokenizer
    model, info = auto_class(config).from_pretrained(source, dtype=dtype, **weights, **common,
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
