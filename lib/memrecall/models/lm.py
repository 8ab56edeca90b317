"""The loaded model: :class:`LM` (model, tokenizer, architecture, head) and :func:`wrap`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..head import Head
from .architectures import Architecture, resolve

__all__ = ["LM", "wrap"]


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
    def vocab_size(self) -> int:
        """Rows of the unembedding."""
        return self.head.vocab_size

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
