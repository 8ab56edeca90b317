"""The loaded model: :class:`LM` (model, tokenizer, architecture, head) and :func:`wrap`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .architectures import Architecture, resolve
from .finite import check_finite_weights
from .head import Head

__all__ = ["LM", "state_fingerprint", "tokenizer_fingerprint", "wrap"]

FINGERPRINT_SAMPLE = 1024  # elements hashed per tensor by state_fingerprint


@dataclass
class LM:
    """A loaded language model ready for :func:`memrecall.project`.

    Attributes:
        model: the Hugging Face ``*ForCausalLM`` / ``*ForMaskedLM`` model, in eval mode.
        tokenizer: its (fast) tokenizer.
        name: registry name, hub id or path it was loaded from.
        revision: where the weights come from (hub commit, package version, ``seed=N``...).
        weights: what identifies the weights' bytes: ``gguf-sha256:<hex>`` for a model loaded
            from a GGUF file, by default :func:`state_fingerprint` (computed when wrapped).
        arch: where its blocks, final norm and unembedding are.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    revision: str = "unknown"
    weights: str = ""
    arch: Architecture = field(init=False)

    def __post_init__(self) -> None:
        self.arch = resolve(self.model)
        self.weights = self.weights or state_fingerprint(self.model)
        self.model.eval()
        if not getattr(self.tokenizer, "is_fast", False):
            raise TypeError(
                f"{self.name}: memrecall needs a fast tokenizer (character offsets); got "
                f"{type(self.tokenizer).__name__}. Load it with AutoTokenizer(..., use_fast=True)."
            )
        if self.is_masked and self.tokenizer.mask_token is None:
            raise ValueError(f"{self.name}: a masked LM needs a tokenizer with a mask token")

    @cached_property
    def head(self) -> Head:
        """The model's read-out (final norm, unembedding, vocabulary scan), built once."""
        return Head(self.arch)

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
        """Where the weights are (read from the unembedding, so it follows ``model.to``)."""
        return self.head.device

    @property
    def devices(self) -> list[torch.device]:
        """Every device that holds weights: one, or several under a device map.

        Weights offloaded to CPU or disk (on ``meta`` between forwards) are left out.
        """
        found = {p.device for p in self.model.parameters()} | {self.device}
        return sorted((d for d in found if d.type != "meta"), key=str)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype."""
        return self.head.dtype

    @property
    def max_length(self) -> int | None:
        """The longest input in tokens (the context window), from the model's config.

        ``max_position_embeddings`` (Llama, Gemma, BERT), ``n_positions`` (GPT-2) or ``n_ctx``;
        None when the config names none.
        """
        config = self.model.config.get_text_config()
        for attribute in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def vocab_size(self) -> int:
        """Rows of the unembedding."""
        return self.head.vocab_size

    @cached_property
    def tokenizer_fingerprint(self) -> str:
        """What identifies the tokenizer (:func:`tokenizer_fingerprint`), taken once."""
        return tokenizer_fingerprint(self.tokenizer)

    def provenance(self) -> dict[str, str | int]:
        """What identifies these weights and this tokenizer, for the results cache and captions.

        The tokenizer is part of it: the same weights read through a tokenizer that adds BOS,
        or through an edited ``tokenizer.json``, give other ranks.
        """
        return {
            "model": self.name,
            "revision": self.revision,
            "weights": self.weights,
            "tokenizer": self.tokenizer_fingerprint,
            "model_type": self.arch.model_type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "n_layers": self.n_layers,
        }

    def __repr__(self) -> str:
        return (f"LM({self.name!r}, {self.arch.model_type}, {self.kind}, {self.n_layers} layers, "
                f"vocab {self.vocab_size}, {self.device}, {self.dtype})")


def state_fingerprint(model: PreTrainedModel, sample: int = FINGERPRINT_SAMPLE) -> str:
    """A cheap identity of a model's weights and config: ``"state-sample-sha256:<hex>"``.

    The sha256 of the config (without the load path and library version) and, for every tensor
    of the state dict, its name, dtype, shape and the bytes of ``sample`` elements spread evenly
    over it (stride ``numel // sample``). It reads a few thousand numbers per tensor, so it takes
    milliseconds for any model on any device, where hashing every byte would take seconds per
    GB. Another checkpoint, fine-tune, dtype or config changes it; an edit confined to a few
    weights between the sampled ones does not, so name such a model with ``revision``.
    """
    config = {k: v for k, v in model.config.to_diff_dict().items()
              if not k.startswith("_") and k != "transformers_version"}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        picked = flat[:: max(1, flat.numel() // sample)][:sample].contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(picked.view(torch.uint8).numpy().tobytes())
    return f"state-sample-sha256:{digest.hexdigest()}"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """What identifies a tokenizer's behaviour: ``"tokenizer-sha256:<hex>"``.

    The sha256 of its whole serialised definition (``backend_tokenizer.to_str()`` for a fast
    tokenizer: vocabulary, merges, normaliser, pre-tokeniser, the post-processor that adds BOS or
    EOS) plus its special tokens and ``add_bos_token`` / ``add_eos_token`` settings; for a slow
    tokenizer its vocabulary instead of the serialised definition.
    """
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    settings = {
        "special": {key: str(value) for key, value in tokenizer.special_tokens_map.items()},
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
        "add_eos_token": getattr(tokenizer, "add_eos_token", None),
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"tokenizer-sha256:{digest.hexdigest()}"


def wrap(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str | None = None,
         revision: str | None = None) -> LM:
    """Wrap an already-loaded Hugging Face causal LM or masked LM (BERT-style).

    The weights are identified by :func:`state_fingerprint`, taken now; ``revision`` defaults to
    the hub commit recorded in the config, else ``"unknown"``.

    Raises:
        NonFiniteError: a weight holds a NaN or inf (the message names the tensor).
    """
    name = name or getattr(model.config, "name_or_path", "") or type(model).__name__
    check_finite_weights(model, name)
    revision = revision or getattr(model.config, "_commit_hash", None) or "unknown"
    return LM(model=model, tokenizer=tokenizer, name=name, revision=revision)
