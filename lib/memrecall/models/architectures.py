"""The one place that knows where each architecture keeps its blocks, final norm and unembedding.

It also knows which architectures normalise the MLP's output before adding it to the residual
stream (Gemma 2 and 3: ``post_feedforward_layernorm``), and how that norm computes, so that a
knockout can freeze its scale (:mod:`memrecall.interventions.knockout`).

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
    # relative to one block: a Gemma RMSNorm on the MLP output before the residual add
    # (Architecture.post_mlp_norm_at_scale is its formula); empty: the MLP output is added as is
    post_mlp_norm: tuple[str, ...] = ()
    # relative to one block: the self-attention module that calls the attention function
    attention: tuple[str, ...] = ("self_attn",)


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
        attention=("attn",),
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
        attention=("attention",),
    ),
    **{name: ArchSpec(**_DECODER) for name in ("llama", "mistral", "qwen2", "qwen3", "gemma")},
    **{name: ArchSpec(**_DECODER, post_mlp_norm=("post_feedforward_layernorm",))
       for name in ("gemma2", "gemma3", "gemma3_text")},
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
        attention=("attention.self",),
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
    post_mlp_norm_paths: tuple[str, ...] = ()
    attention_paths: tuple[str, ...] = ("self_attn",)

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    def mlp(self, layer: int) -> nn.Module:
        """The feed-forward module of block ``layer``."""
        return _first(self.blocks[layer], self.mlp_paths, "MLP", self.model_type)

    def attention(self, layer: int) -> nn.Module:
        """The self-attention module of block ``layer``: it calls the attention function."""
        return _first(self.blocks[layer], self.attention_paths, "attention", self.model_type)

    def mlp_out(self, layer: int) -> nn.Module:
        """The MLP's output projection: its input is the neuron activations."""
        return _first(self.mlp(layer), self.mlp_out_paths, "MLP output projection",
                      self.model_type)

    @property
    def has_post_mlp_norm(self) -> bool:
        """Whether each block normalises its MLP output before the residual add (Gemma 2/3)."""
        return bool(self.post_mlp_norm_paths)

    def post_mlp_norm(self, layer: int) -> nn.Module | None:
        """The norm on block ``layer``'s MLP output before the residual add; None if none.

        Its forward is :meth:`post_mlp_norm_at_scale` at the scale :meth:`post_mlp_norm_scale`
        of its input.
        """
        if not self.post_mlp_norm_paths:
            return None
        return _first(self.blocks[layer], self.post_mlp_norm_paths, "post-MLP norm",
                      self.model_type)

    def post_mlp_norm_scale(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """The post-MLP norm's scale ``1 / rms`` of its input: ``(..., d) -> (..., 1)`` float32.

        ``rsqrt(mean(x^2) + eps)`` in float32, as Gemma's RMSNorm computes it.
        """
        norm = self._post_mlp_norm(layer)
        return torch.rsqrt(hidden.float().pow(2).mean(-1, keepdim=True) + norm.eps)

    def post_mlp_norm_at_scale(self, layer: int, hidden: torch.Tensor,
                               scale: torch.Tensor) -> torch.Tensor:
        """The post-MLP norm with its scale given: ``(x * scale) * (1 + w)`` (Gemma's RMSNorm).

        Computed in float32 and cast back to ``hidden``'s dtype in the norm's own order of
        operations, so at ``scale = post_mlp_norm_scale(layer, x)`` it equals the norm's output
        bit for bit; at a fixed scale (a clean run's) it is linear in ``x``.

        Args:
            layer: the block.
            hidden: ``(..., d)`` the norm's input (the MLP output).
            scale: ``(..., 1)`` float32, broadcast against ``hidden``.
        """
        norm = self._post_mlp_norm(layer)
        return ((hidden.float() * scale) * (1.0 + norm.weight.float())).type_as(hidden)

    def _post_mlp_norm(self, layer: int) -> nn.Module:
        norm = self.post_mlp_norm(layer)
        if norm is None:
            raise ValueError(f"{self.model_type} has no norm after the MLP")
        return norm

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
        post_mlp_norm_paths=spec.post_mlp_norm,
        attention_paths=spec.attention,
    )
