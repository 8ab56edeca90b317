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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch

from ..forward.hooks import forward_hooks, scale_inputs_hook, zero_neurons_hook
from ..models import LM
from .neurons import mlp_width

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
             complement: bool = False) -> Iterator[None]:
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

    The hooks (forward-pre hooks on ``lm.arch.mlp_out(layer)``) are removed on exit, also after
    an exception.
    """
    at = _check_scope(lm, scope, positions)
    hooks = []
    for layer, chosen in neurons.items():
        if not 0 <= layer < lm.n_layers:
            raise IndexError(f"layer {layer} out of range for {lm.n_layers} layers")
        mask = neuron_mask(chosen, mlp_width(lm, layer), lm.device)
        if complement:
            mask = ~mask
        hooks.append((lm.arch.mlp_out(layer),
                      zero_neurons_hook(mask, at, name=f"knockout of layer {layer}")))
    with forward_hooks(hooks, pre=True):
        yield


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


@contextmanager
def neuron_masks(lm: LM, masks: Mapping[int, torch.Tensor], *,
                 positions: torch.Tensor | Sequence[int] | None = None,
                 scope: Scope = "all") -> Iterator[None]:
    """Multiply each row's MLP activations by its own 0/1 mask in every forward of the block.

    The batched form of :func:`knockout`: row ``r`` of the next forwards keeps neuron ``i`` of
    layer ``l`` where ``masks[l][r, i] == 1`` and zeroes it where it is 0, so one forward holds
    many (configuration, probe) rows, each with its own neurons. Layers not in ``masks`` run
    untouched.

    Args:
        lm: the model.
        masks: ``{layer: (batch, d_ff)}`` float or bool (1 = keep); layers 0-based.
        positions: ``(batch,)`` prediction positions; needed for ``scope="prediction"``.
        scope: ``"all"`` positions (the authors' choice) or the ``"prediction"`` position only.
    """
    at = _check_scope(lm, scope, positions)
    hooks = []
    for layer, mask in masks.items():
        if not 0 <= layer < lm.n_layers:
            raise IndexError(f"layer {layer} out of range for {lm.n_layers} layers")
        if mask.shape[-1] != mlp_width(lm, layer):
            raise ValueError(f"layer {layer}: masks of width {mask.shape[-1]}, MLP width "
                             f"{mlp_width(lm, layer)}")
        hooks.append((lm.arch.mlp_out(layer),
                      scale_inputs_hook(mask, at, name=f"masks of layer {layer}")))
    with forward_hooks(hooks, pre=True):
        yield
