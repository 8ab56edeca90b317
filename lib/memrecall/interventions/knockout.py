"""Neuron knockouts: zero chosen MLP activations during a forward pass, per probe and layer.

A knockout zeroes the activations ``m_i`` of chosen neurons (so their sub-updates ``m_i v_i``
vanish) at every position (``scope="all"``, the authors' choice) or at the prediction position
only (``scope="prediction"``).

* :func:`knockout`: neuron indices per layer (one set per row, or one for all), zeroed by
  :func:`memrecall.forward.zero_neurons_hook`; ``complement`` zeroes all *but* them;
* :func:`neuron_masks`: 0/1 masks per layer and row, multiplied into the activations
  (:func:`memrecall.forward.scale_inputs_hook`): what the batched sweep uses, where each row of
  a forward is its own (configuration, probe);
* :func:`neuron_mask`: indices to a boolean mask.

**Frozen post-MLP norm (Gemma 2/3).** The paper's GPT-2 adds the MLP output ``sum_i m_i v_i``
to the residual stream as it is, so a knockout removes exactly the knocked-out sub-updates.
Gemma 2 and 3 first pass the MLP output through an RMSNorm (``post_feedforward_layernorm``):
``(1 + w) * y / rms(y)``. Zeroing most neurons shrinks ``y`` and the norm scales it back up, so
the residual stream would not lose those sub-updates. With ``frozen_norm`` (the default) the
norm's scale ``1 / rms`` is the *clean* run's, per row, position and layer, wherever neurons are
knocked out: the MLP adds ``(1 + w) * sum_i m_i v_i / rms_clean`` over the kept neurons, and
the residual stream changes by exactly minus the removed ``(1 + w) * m_i v_i / rms_clean`` (the
"frozen norm" of attribution work). The norm is frozen in the layers of the knockout, in the
rows where that layer zeroes at least one neuron, at the positions where it zeroes them (every
position for ``scope="all"``; the prediction position for ``scope="prediction"``, the only one
changed: the models are causal); elsewhere it runs as usual. ``frozen_norm=False`` recomputes
the norm on the knocked-out output. Architectures without a norm after the MLP (GPT-2, Llama,
Qwen, BERT) are untouched by the option and pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Literal

import torch

from ..forward.hooks import (
    forward_hooks,
    hooks_suspended,
    scale_inputs_hook,
    zero_neurons_hook,
)
from ..models import LM
from .neurons import mlp_width
from .resume import record_norm_scales

__all__ = ["Scope", "knockout", "neuron_mask", "neuron_masks"]

Scope = Literal["all", "prediction"]


def neuron_mask(chosen: torch.Tensor | Sequence[int], width: int,
                device: torch.device | str) -> torch.Tensor:
    """``(rows, k)`` or ``(k,)`` indices (negative = padding) -> ``(rows or 1, width)`` bool."""
    index = torch.as_tensor(chosen, dtype=torch.long, device=device)
    if index.ndim == 1:
        index = index.unsqueeze(0)
    if index.ndim != 2:
        raise ValueError(f"neuron indices must be (k,) or (batch, k); got {tuple(index.shape)}")
    if index.numel() and int(index.max()) >= width:
        raise IndexError(f"neuron index {int(index.max())} out of range for MLP width {width}")
    index = torch.where(index < 0, width, index)  # padding goes to a spare column, dropped below
    mask = torch.zeros(index.shape[0], width + 1, dtype=torch.bool, device=device)
    mask.scatter_(1, index, True)
    return mask[:, :width]


@contextmanager
def knockout(lm: LM, neurons: Mapping[int, torch.Tensor | Sequence[int]], *,
             positions: torch.Tensor | Sequence[int] | None = None, scope: Scope = "all",
             complement: bool = False, frozen_norm: bool = True,
             norm_scales: Mapping[int, torch.Tensor] | None = None) -> Iterator[None]:
    """Zero chosen MLP neuron activations in every forward pass inside the ``with`` block.

    Args:
        lm: the model.
        neurons: ``{layer: indices}`` with indices ``(batch, k)`` (one set per row of the batch
            that will run; negative entries are padding, ignored) or ``(k,)`` (the same set for
            every row). Layers are 0-based, not negative.
        positions: ``(batch,)`` prediction positions; needed for ``scope="prediction"``.
        scope: ``"all"`` zeroes at every position (the authors' choice); ``"prediction"`` only at
            ``positions``.
        complement: zero every neuron *except* the given ones (the all-but-top-k control).
        frozen_norm: where the architecture normalises the MLP output (Gemma 2/3), keep that
            norm's scale at the clean run's (see the module docstring); False recomputes it.
            Without ``norm_scales``, each forward of the backbone inside the block first runs
            the same inputs through the unmodified model (every hook set aside, no gradient)
            to record the scales: twice the work, and no KV cache allowed.
        norm_scales: the clean scales to freeze at, ``{layer: (batch, seq, 1)}`` float32
            (:attr:`CleanRun.norm_scales <memrecall.interventions.CleanRun>`), for forwards that
            do not go through the backbone (``CleanRun.forward_from``). Ignored without
            ``frozen_norm`` or without a norm after the MLP.

    The hooks (forward-pre hooks on ``lm.arch.mlp_out(layer)``; forward hooks on the post-MLP
    norms and the backbone) are removed on exit, also after an exception.
    """
    at = _check_scope(lm, scope, positions)
    hooks, zeroed = [], {}
    for layer, chosen in neurons.items():
        _check_layer(lm, layer)
        mask = neuron_mask(chosen, mlp_width(lm, layer), lm.device)
        if complement:
            mask = ~mask
        zeroed[layer] = mask.any(-1)
        hooks.append((lm.arch.mlp_out(layer),
                      zero_neurons_hook(mask, at, name=f"knockout of layer {layer}")))
    if not (frozen_norm and lm.arch.has_post_mlp_norm):
        with forward_hooks(hooks, pre=True):
            yield
        return
    scales = norm_scales if norm_scales is not None else {}
    freezing = [(lm.arch.post_mlp_norm(layer), _freeze_hook(lm, layer, rows, at, scales))
                for layer, rows in zeroed.items()]
    with forward_hooks(hooks, pre=True), forward_hooks(freezing), \
            nullcontext() if norm_scales is not None else _clean_pass_first(lm, scales):
        yield


def _check_layer(lm: LM, layer: int) -> None:
    if not 0 <= layer < lm.n_layers:
        raise IndexError(f"layer {layer} out of range for {lm.n_layers} layers")


def _check_scope(lm: LM, scope: Scope,
                 positions: torch.Tensor | Sequence[int] | None) -> torch.Tensor | None:
    """The positions the hooks act at: None for every position (``scope="all"``)."""
    if scope not in ("all", "prediction"):
        raise ValueError(f"scope must be 'all' or 'prediction', not {scope!r}")
    if scope == "all":
        return None
    if positions is None:
        raise ValueError("scope='prediction' needs the prediction positions")
    return torch.as_tensor(positions, dtype=torch.long, device=lm.device)


def _freeze_hook(lm: LM, layer: int, rows: torch.Tensor, at: torch.Tensor | None,
                 scales: Mapping[int, torch.Tensor]) -> Callable:
    """A forward hook on block ``layer``'s post-MLP norm: its output at the clean scale.

    Args:
        lm: the model.
        layer: the block.
        rows: ``(batch,)`` or ``(1,)`` bool: the rows frozen (the others run as usual).
        at: ``(batch,)`` the one position frozen per row; None: every position.
        scales: read at each call: ``scales[layer]`` ``(batch, seq, 1)`` the clean scales.
    """
    def hook(module, args, output):
        x = args[0]  # (batch, seq, d): the MLP output
        scale = scales.get(layer)
        if scale is None:
            raise RuntimeError(
                f"frozen norm of layer {layer}: no clean scales for this forward; pass "
                "norm_scales (CleanRun(..., norm_scales=True).norm_scales) to forwards that "
                "do not run the backbone, or frozen_norm=False")
        if scale.shape[:2] != x.shape[:2]:
            raise ValueError(f"frozen norm of layer {layer}: clean scales of shape "
                             f"{tuple(scale.shape[:2])}, a forward of {tuple(x.shape[:2])}")
        frozen = lm.arch.post_mlp_norm_at_scale(layer, x, scale.to(x.device))
        where = rows.to(x.device).view(-1, 1, 1)  # (batch or 1, 1, 1)
        if at is not None:
            seq = torch.arange(x.shape[1], device=x.device)
            where = where & (seq == at.to(x.device)[:, None]).unsqueeze(-1)
        return torch.where(where, frozen, output)

    return hook


@contextmanager
def _clean_pass_first(lm: LM, scales: dict[int, torch.Tensor]) -> Iterator[None]:
    """Backbone hooks: each forward of the block first runs clean to record the norm scales.

    A pre-hook runs the backbone on the same inputs with every hook of the model set aside
    (:func:`~memrecall.forward.hooks.hooks_suspended`: the knockout's and the caller's, which
    see one forward only) and fills ``scales``; a hook after the forward empties it, so no
    later forward reads another batch's scales.
    """
    def pre(module, args, kwargs):
        if kwargs.get("past_key_values") is not None:
            raise ValueError("a knockout with a frozen norm runs each forward clean first; it "
                             "cannot share a KV cache (pass frozen_norm=False or norm_scales)")
        with hooks_suspended(lm.model), torch.no_grad(), record_norm_scales(lm) as clean:
            module(*args, **kwargs)
        scales.update(clean)

    def post(module, args, kwargs, output):
        scales.clear()

    backbone = lm.arch.backbone
    with forward_hooks([(backbone, pre)], pre=True, with_kwargs=True), \
            forward_hooks([(backbone, post)], with_kwargs=True):
        yield


@contextmanager
def neuron_masks(lm: LM, masks: Mapping[int, torch.Tensor], *,
                 positions: torch.Tensor | Sequence[int] | None = None,
                 scope: Scope = "all",
                 norm_scales: Mapping[int, torch.Tensor] | None = None) -> Iterator[None]:
    """Multiply each row's MLP activations by its own 0/1 mask in every forward of the block.

    The batched form of :func:`knockout`: row ``r`` of the next forwards keeps neuron ``i`` of
    layer ``l`` where ``masks[l][r, i] == 1`` and zeroes it where it is 0, so one forward holds
    many (configuration, probe) rows, each with its own neurons. Layers not in ``masks`` run
    untouched.

    Args:
        lm: the model.
        masks: ``{layer: (batch, d_ff)}`` float or bool (1 = keep); layers 0-based.
        positions: ``(batch,)`` prediction positions; needed for ``scope="prediction"``.
        scope: ``"all"`` positions (the authors') or the ``"prediction"`` position only.
        norm_scales: ``{layer: (batch, seq, 1)}`` float32 clean scales of the post-MLP norm
            (:meth:`CleanRun.scales_for <memrecall.interventions.CleanRun.scales_for>`), one
            per layer of ``masks``: the norm is frozen at them in the rows whose mask zeroes a
            neuron, where it zeroes it (see the module docstring). None (or a model without a
            norm after its MLP): the norm runs as usual.
    """
    at = _check_scope(lm, scope, positions)
    freeze = norm_scales is not None and lm.arch.has_post_mlp_norm
    hooks, freezing = [], []
    for layer, mask in masks.items():
        _check_layer(lm, layer)
        if mask.shape[-1] != mlp_width(lm, layer):
            raise ValueError(f"layer {layer}: masks of width {mask.shape[-1]}, MLP width "
                             f"{mlp_width(lm, layer)}")
        hooks.append((lm.arch.mlp_out(layer),
                      scale_inputs_hook(mask, at, name=f"masks of layer {layer}")))
        if freeze:
            if layer not in norm_scales:
                raise ValueError(f"no clean norm scales for layer {layer}")
            freezing.append((lm.arch.post_mlp_norm(layer), _freeze_hook(
                lm, layer, (mask == 0).any(-1), at, norm_scales)))
    with forward_hooks(hooks, pre=True), forward_hooks(freezing):
        yield
