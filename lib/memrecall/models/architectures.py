"""The one place that knows where each architecture keeps its blocks, final norm and unembedding.

Every other module asks :func:`resolve` and never touches ``model.transformer.h`` or similar.
An entry lists candidate attribute paths; the first that exists on the loaded model wins, so one
entry covers the ``*ForCausalLM`` class and its multimodal wrapper alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Kind = Literal["causal", "masked"]


class UnsupportedArchitectureError(ValueError):
    """The model's ``model_type`` is not in the architecture table."""


@dataclass(frozen=True)
class ArchSpec:
    """Attribute paths (dotted, relative to the loaded model) for one family of architectures."""

    kind: Kind
    backbone: tuple[str, ...]
    blocks: tuple[str, ...]
    final_norm: tuple[str, ...]  # empty: the blocks' outputs are already normalised (BERT)
    head_transform: tuple[str, ...]  # empty: none (decoders); BERT: the MLM head's dense+LN
    unembed: tuple[str, ...]  # an nn.Linear-like module with .weight (vocab, d) and maybe .bias
    unembed_bias: tuple[str, ...]  # a separate bias parameter (BERT's MLM head), else empty
    mlp: tuple[str, ...]  # relative to one block
    mlp_out: tuple[str, ...]  # relative to the mlp module: the output (down) projection


_DECODER = dict(
    kind="causal",
    backbone=("model.language_model", "model"),
    blocks=("model.language_model.layers", "model.layers"),
    final_norm=("model.language_model.norm", "model.norm"),
    head_transform=(),
    unembed=("lm_head",),
    unembed_bias=(),
    mlp=("mlp",),
    mlp_out=("down_proj",),
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "gpt2": ArchSpec(
        kind="causal",
        backbone=("transformer",),
        blocks=("transformer.h",),
        final_norm=("transformer.ln_f",),
        head_transform=(),
        unembed=("lm_head",),
        unembed_bias=(),
        mlp=("mlp",),
        mlp_out=("c_proj",),
    ),
    "gpt_neox": ArchSpec(
        kind="causal",
        backbone=("gpt_neox",),
        blocks=("gpt_neox.layers",),
        final_norm=("gpt_neox.final_layer_norm",),
        head_transform=(),
        unembed=("embed_out",),
        unembed_bias=(),
        mlp=("mlp",),
        mlp_out=("dense_4h_to_h",),
    ),
    **{name: ArchSpec(**_DECODER) for name in ("llama", "mistral", "qwen2", "qwen3", "gemma",
                                               "gemma2", "gemma3", "gemma3_text")},
    "bert": ArchSpec(
        kind="masked",
        backbone=("bert",),
        blocks=("bert.encoder.layer",),
        final_norm=(),
        head_transform=("cls.predictions.transform",),
        unembed=("cls.predictions.decoder",),
        unembed_bias=("cls.predictions.bias",),
        mlp=("",),
        mlp_out=("output.dense",),
    ),
}


def _get(root: nn.Module, path: str):
    obj = root
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _first(root: nn.Module, candidates: tuple[str, ...], what: str, model_type: str):
    for path in candidates:
        obj = _get(root, path)
        if obj is not None:
            return obj
    raise UnsupportedArchitectureError(
        f"{type(root).__name__} ({model_type}): none of {list(candidates)} found for the {what}; "
        "the architecture table in memrecall.models.architectures needs updating for this "
        "model class"
    )


@dataclass
class Architecture:
    """The modules of one loaded model that the lens and the interventions need."""

    model_type: str
    kind: Kind
    backbone: nn.Module
    blocks: nn.ModuleList
    final_norm: nn.Module | None
    head_transform: nn.Module | None
    unembed_weight: torch.Tensor  # (vocab, d)
    unembed_bias: torch.Tensor | None  # (vocab,)
    logit_softcap: float | None
    mlp_paths: tuple[str, ...]
    mlp_out_paths: tuple[str, ...]

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    def mlp(self, layer: int) -> nn.Module:
        """The feed-forward module of block ``layer``."""
        return _first(self.blocks[layer], self.mlp_paths, "MLP", self.model_type)

    def mlp_out(self, layer: int) -> nn.Module:
        """The MLP's output projection: its input is the neuron activations."""
        return _first(self.mlp(layer), self.mlp_out_paths, "MLP output projection",
                      self.model_type)

    def pre_unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm (and BERT's MLM transform): ``(..., d) -> (..., d)``."""
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        if self.head_transform is not None:
            hidden = self.head_transform(hidden)
        return hidden


def supported_model_types() -> list[str]:
    """The ``config.model_type`` values the architecture table covers."""
    return sorted(ARCHITECTURES)


def resolve(model: nn.Module) -> Architecture:
    """Locate blocks, final norm, unembedding and MLPs of a Hugging Face model.

    Raises:
        UnsupportedArchitectureError: the model type is not in the table (the message lists the
            supported ones).
    """
    config = model.config
    model_type = getattr(config, "model_type", type(model).__name__)
    spec = ARCHITECTURES.get(model_type)
    if spec is None:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} ({type(model).__name__}) is not supported; supported: "
            f"{', '.join(supported_model_types())}. Add an entry to "
            "memrecall.models.architectures.ARCHITECTURES."
        )
    if spec.kind == "masked" and not hasattr(model, "cls"):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no masked-LM head; load it with AutoModelForMaskedLM"
        )
    unembed = _first(model, spec.unembed, "unembedding", model_type)
    bias = getattr(unembed, "bias", None)
    if bias is None and spec.unembed_bias:
        bias = _get(model, spec.unembed_bias[0])
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return Architecture(
        model_type=model_type,
        kind=spec.kind,
        backbone=_first(model, spec.backbone, "backbone", model_type),
        blocks=_first(model, spec.blocks, "blocks", model_type),
        final_norm=_first(model, spec.final_norm, "final norm", model_type)
        if spec.final_norm else None,
        head_transform=_first(model, spec.head_transform, "MLM head transform", model_type)
        if spec.head_transform else None,
        unembed_weight=unembed.weight,
        unembed_bias=bias,
        logit_softcap=getattr(text_config, "final_logit_softcapping", None),
        mlp_paths=spec.mlp,
        mlp_out_paths=spec.mlp_out,
    )
