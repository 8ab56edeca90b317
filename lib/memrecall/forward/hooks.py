"""Forward hooks as context managers: registered on entry, always removed on exit.

Captured tensors are returned to the caller, never stored on the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Call",
    "capture_at_positions",
    "capture_inputs_at_positions",
    "capture_where",
    "forward_hooks",
    "hooks_suspended",
    "record_calls",
    "scale_inputs_hook",
    "zero_neurons_hook",
]


def _hidden(output) -> torch.Tensor:
    """A block's hidden states, whether it returns a tensor or a tuple starting with one."""
    return output[0] if isinstance(output, tuple | list) else output


def _at_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``hidden[row, positions[row]]`` for every row, on ``positions``' device.

    A block of a model spread over several devices runs on its own: the read is made there and
    the ``(batch, ...)`` result gathered on one device.
    """
    where = positions.to(hidden.device)
    rows = torch.arange(len(where), device=hidden.device)
    return hidden[rows, where].detach().to(positions.device)


@contextmanager
def capture_at_positions(blocks: Sequence[nn.Module],
                         positions: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """Record each block's output hidden state at one position per row.

    Args:
        blocks: the transformer blocks, in order.
        positions: ``(batch,)`` position of interest in each row.

    Yields:
        A list that fills, during the forward pass, with one ``(batch, d)`` tensor per block.
    """
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        captured.append(_at_positions(_hidden(output), positions))

    with forward_hooks([(block, hook) for block in blocks]):
        yield captured


@contextmanager
def capture_where(blocks: Sequence[nn.Module], mask: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """Record each block's output hidden states at every position where ``mask`` is true.

    Args:
        blocks: the transformer blocks, in order.
        mask: ``(batch, seq)`` bool, the positions to keep.

    Yields:
        A list that fills, during the forward pass, with one ``(rows, d)`` tensor per block,
        ``rows`` the true entries of ``mask`` in row-major order.
    """
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        captured.append(_hidden(output)[mask].detach())

    with forward_hooks([(block, hook) for block in blocks]):
        yield captured


@contextmanager
def forward_hooks(hooks: Sequence[tuple[nn.Module, Callable]], pre: bool = False,
                  with_kwargs: bool = False) -> Iterator[None]:
    """Register ``(module, hook)`` pairs (forward or forward-pre hooks) for the ``with`` block.

    With ``with_kwargs`` the hooks also receive (and a pre-hook may return) the keyword inputs,
    as :meth:`torch.nn.Module.register_forward_hook` describes.
    """
    handles = []
    try:
        for module, hook in hooks:
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook, with_kwargs=with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def hooks_suspended(model: nn.Module) -> Iterator[None]:
    """Set every forward and forward-pre hook of ``model``'s modules aside for the block.

    Forwards inside run the unmodified model (hooks registered inside do run); the hooks come
    back, in their order, on exit. Global hooks (``torch.nn.modules.module.register_module_*``)
    and wrapped ``forward`` methods (accelerate's device maps) are not hooks of a module and
    stay.
    """
    saved = []
    for module in model.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            saved.append((hooks, list(hooks.items())))
            hooks.clear()
    try:
        yield
    finally:
        for hooks, items in saved:
            hooks.clear()
            hooks.update(items)


@contextmanager
def capture_inputs_at_positions(modules: Sequence[nn.Module],
                                positions: torch.Tensor) -> Iterator[list[torch.Tensor | None]]:
    """Record each module's first input at one position per row (forward-pre hooks).

    Args:
        modules: modules whose first positional input is ``(batch, seq, ...)``.
        positions: ``(batch,)`` position of interest in each row.

    Yields:
        A list with one slot per module, filled during the forward pass with that module's
        ``(batch, ...)`` input at ``positions`` (``None`` for a module that did not run).
    """
    captured: list[torch.Tensor | None] = [None] * len(modules)

    def make_hook(slot: int) -> Callable:
        def hook(module, args):
            captured[slot] = _at_positions(args[0], positions)
        return hook

    with forward_hooks([(module, make_hook(i)) for i, module in enumerate(modules)], pre=True):
        yield captured


@dataclass
class Call:
    """One recorded call of a module: its positional and keyword inputs and its output."""

    args: tuple
    kwargs: dict
    output: object = None


@contextmanager
def record_calls(modules: Sequence[nn.Module]) -> Iterator[list[Call | None]]:
    """Record the inputs and output of each module's (last) call during the ``with`` block.

    Yields:
        A list with one slot per module, filled during the forward pass with a :class:`Call`
        (``None`` for a module that did not run). The recorded tensors are the live ones (not
        copies): do not modify them.
    """
    calls: list[Call | None] = [None] * len(modules)
    handles = []

    def make_hooks(slot: int) -> tuple[Callable, Callable]:
        def pre(module, args, kwargs):
            calls[slot] = Call(args=args, kwargs=dict(kwargs))

        def post(module, args, kwargs, output):
            calls[slot].output = output

        return pre, post

    try:
        for slot, module in enumerate(modules):
            pre, post = make_hooks(slot)
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def zero_neurons_hook(mask: torch.Tensor, positions: torch.Tensor | None = None,
                      name: str = "zero_neurons") -> Callable:
    """A forward-pre hook that zeroes chosen entries of a module's first input.

    Register it with ``forward_hooks([(module, hook)], pre=True)``; the input is
    ``(batch, seq, width)`` (e.g. the neuron activations entering an MLP's output projection).

    Args:
        mask: ``(batch, width)`` or ``(1, width)`` bool, True = zero that entry (one row per row
            of the batch that will run, or one row for all).
        positions: None to zero at every position; ``(batch,)`` to zero only at one position
            per row.
        name: how errors name the hook (e.g. ``"knockout of layer 3"``).
    """
    def hook(module, args):
        x = args[0]  # (batch, seq, width), on this block's device
        if mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"{name}: neuron sets for {mask.shape[0]} rows, but the forward "
                             f"pass has {x.shape[0]}")
        here = mask.to(x.device)
        if positions is None:
            x = x.masked_fill(here.unsqueeze(1), 0)
        else:
            if len(positions) != x.shape[0]:
                raise ValueError(f"{name}: {len(positions)} positions for a batch of "
                                 f"{x.shape[0]}")
            rows = torch.arange(x.shape[0], device=x.device)
            where = positions.to(x.device)
            x = x.clone()
            x[rows, where] = x[rows, where].masked_fill(here, 0)
        return (x, *args[1:])

    return hook


def scale_inputs_hook(scale: torch.Tensor, positions: torch.Tensor | None = None,
                      name: str = "scale_inputs") -> Callable:
    """A forward-pre hook that multiplies a module's first input by a per-row factor.

    The input is ``(batch, seq, width)`` (e.g. the neuron activations entering an MLP's output
    projection); a 0/1 ``scale`` keeps or zeroes each entry, one set per row of the batch.

    Args:
        scale: ``(batch, width)``: the factor of each row's entries.
        positions: None to scale at every position; ``(batch,)`` to scale only at one position
            per row.
        name: how errors name the hook (e.g. ``"masks of layer 3"``).
    """
    def hook(module, args):
        x = args[0]  # (batch, seq, width)
        if scale.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: factors for {scale.shape[0]} rows, but the forward pass "
                             f"has {x.shape[0]}")
        factor = scale.to(x.dtype)
        if positions is None:
            x = x * factor.unsqueeze(1)
        else:
            rows = torch.arange(x.shape[0], device=x.device)
            x = x.clone()
            x[rows, positions] = x[rows, positions] * factor
        return (x, *args[1:])

    return hook
