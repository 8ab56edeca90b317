"""Forward hooks as context managers: registered on entry, always removed on exit.

Captured tensors are returned to the caller, never stored on the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def _hidden(output) -> torch.Tensor:
    """A block's hidden states, whether it returns a tensor or a tuple starting with one."""
    return output[0] if isinstance(output, tuple | list) else output


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
    rows = torch.arange(len(positions), device=positions.device)

    def hook(module, args, output):
        captured.append(_hidden(output)[rows, positions].detach())

    with forward_hooks([(block, hook) for block in blocks]):
        yield captured


@contextmanager
def forward_hooks(hooks: Sequence[tuple[nn.Module, Callable]],
                  pre: bool = False) -> Iterator[None]:
    """Register ``(module, hook)`` pairs (forward or forward-pre hooks) for the ``with`` block."""
    handles = []
    try:
        for module, hook in hooks:
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
