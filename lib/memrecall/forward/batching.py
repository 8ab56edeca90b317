"""What the model reads and how prompts are grouped: inputs, padding, batch plans, memory budgets.

* :func:`model_inputs`: token ids per prompt and the position whose output is the prediction
  (a prompt longer than the context window is an error naming its row);
* :func:`check_batch_size`: ``None`` or a positive int, else a clear error;
* :func:`pad_right` / :func:`pad_left`: one padded batch and its attention mask;
* :func:`plan_batches`: prompts sorted by length and cut where padding would cost more than one
  more batch, under a token budget (:func:`activation_token_budget`);
* :func:`halve_on_oom` / :func:`iter_halving`: run batches, splitting any that runs out of
  device memory (:func:`halves` splits a batch of rows in two, in order).

The engine rule for batches: every forward loop of the package takes its batch sizes from a
memory budget by default (an explicit batch size caps or fixes them) and runs its batches
through :func:`iter_halving`, so an out-of-memory batch is redone in halves, its rows in the
same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ..models import LM

__all__ = [
    "ACTIVATION_BYTES",
    "BATCH_OVERHEAD_TOKENS",
    "CUDA_FREE_FRACTION",
    "MIN_ACTIVATION_BYTES",
    "activation_bytes",
    "activation_token_budget",
    "batch_overhead_tokens",
    "check_batch_size",
    "halve_on_oom",
    "halves",
    "is_out_of_memory",
    "iter_halving",
    "model_inputs",
    "pad_left",
    "pad_right",
    "plan_batches",
]

# Working memory for a batch's activations on devices whose free memory is not read (CPU...).
ACTIVATION_BYTES = {"cpu": 1 * 2**30}
# On CUDA the budget is this share of the memory free when the batches are planned (the rest
# covers the vocabulary tiles and the allocator's slack), and at least MIN_ACTIVATION_BYTES.
CUDA_FREE_FRACTION = 0.5
MIN_ACTIVATION_BYTES = 256 * 2**20
# What one more batch costs beyond its tokens (a forward's fixed cost, two passes over the
# unembedding), in tokens: plan_batches trades it against padding. See batch_overhead_tokens.
BATCH_OVERHEAD_TOKENS = 64

Item = TypeVar("Item")


def check_batch_size(batch_size: object) -> int | None:
    """``batch_size`` if it is None or a positive int (``"8"`` is read as 8), else an error.

    Raises:
        ValueError: 0, a negative number, a fraction, a bool or text that is not a whole number.
    """
    if batch_size is None:
        return None
    value = batch_size
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = batch_size
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"batch_size must be a positive whole number (or None for automatic), "
                         f"got {batch_size!r}")
    return int(value)


def model_inputs(lm: LM, prompts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
    """Token ids the model reads for each prompt, and the position whose output is the prediction.

    Causal LMs read the prompt (with whatever BOS the tokenizer adds) and predict at its last
    token; masked LMs read ``prompt + " " + mask + "."`` and predict at the mask. No prompts give
    two empty lists.

    Raises:
        ValueError: a prompt tokenizes to nothing, or to more tokens than the model's context
            window (:attr:`memrecall.models.LM.max_length`); the message names the row.
    """
    if len(prompts) == 0:
        return [], []
    tokenizer = lm.tokenizer
    if lm.is_masked:
        texts = [f"{p} {tokenizer.mask_token}." for p in prompts]
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        positions = [row.index(tokenizer.mask_token_id) for row in ids]
    else:
        ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        positions = [len(row) - 1 for row in ids]
    limit = lm.max_length
    for row, tokens in enumerate(ids):
        if not tokens:
            raise ValueError(f"row {row}: prompt {prompts[row]!r} tokenizes to nothing")
        if limit is not None and len(tokens) > limit:
            raise ValueError(
                f"row {row}: the prompt is {len(tokens)} tokens long (as {lm.name} reads it), "
                f"more than its context window of {limit} tokens; shorten it or drop the row "
                f"(it starts {prompts[row][:60]!r})")
    return ids, positions


def pad_right(ids: Sequence[Sequence[int]], pad_id: int,
              device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(batch, longest)`` input ids and their attention mask (1 = real token)."""
    longest = max(map(len, ids))
    input_ids = torch.tensor([list(row) + [pad_id] * (longest - len(row)) for row in ids],
                             device=device)
    attention_mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids],
                                  device=device)
    return input_ids, attention_mask


def pad_left(ids: Sequence[Sequence[int]], pad_id: int,
             device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(batch, longest)`` input ids and their attention mask (for generation).

    Positions of the real tokens are then ``(attention_mask.cumsum(1) - 1).clamp(min=0)``.
    """
    longest = max(map(len, ids))
    input_ids = torch.tensor([[pad_id] * (longest - len(row)) + list(row) for row in ids],
                             device=device)
    attention_mask = torch.tensor([[0] * (longest - len(row)) + [1] * len(row) for row in ids],
                                  device=device)
    return input_ids, attention_mask


def plan_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None,
                 overhead_tokens: int = BATCH_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Group row indices, longest first, so that ``rows x longest`` stays under ``max_tokens``.

    Rows are sorted by length and cut into consecutive batches that minimise the padded tokens
    plus ``overhead_tokens`` per batch (the fixed cost of one forward and one vocabulary pass,
    counted in tokens): rows of equal length share a batch with no padding at all, and a few
    odd lengths join a neighbour rather than run alone. Exact (dynamic programming over cuts).

    Raises:
        ValueError: ``max_rows`` is not None or a positive int (:func:`check_batch_size`).
    """
    max_rows = check_batch_size(max_rows)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    n = len(order)
    if n == 0:
        return []
    sorted_lengths = np.asarray(lengths, dtype=np.int64)[order]
    row_cap = n if max_rows is None else max_rows
    cost = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for stop in range(1, n + 1):
        # a batch [start, stop) pads to sorted_lengths[start]; feasible starts form a suffix
        width = min(row_cap, stop, max(1, max_tokens // max(1, int(sorted_lengths[stop - 1]))))
        starts = np.arange(stop - width, stop)
        rows = stop - starts
        padded = rows * sorted_lengths[starts]
        total = cost[starts] + padded + overhead_tokens
        total[(padded > max_tokens) & (rows > 1)] = np.inf
        best = int(np.argmin(total))
        cost[stop], cut[stop] = total[best], starts[best]
    batches, stop = [], n
    while stop > 0:
        batches.append(order[cut[stop]:stop])
        stop = int(cut[stop])
    return batches[::-1]


def batch_overhead_tokens(lm: LM) -> int:
    """The fixed cost of one more batch, in tokens of forward work, for :func:`plan_batches`.

    A batch costs per-layer launch overhead and two memory-bound passes over the unembedding
    (about 1e8 FLOP-equivalents per layer, 20 per byte of weights) whatever its size; a token
    costs ``2 x block parameters`` FLOP. Small models thus prefer few batches (some padding),
    large ones many (none).
    """
    block_params = sum(p.numel() for p in lm.arch.blocks.parameters())
    unembed = lm.arch.unembed_weight
    fixed = 1e8 * lm.n_layers + 20 * 2 * unembed.numel() * unembed.element_size()
    return int(np.clip(fixed / (2 * max(block_params, 1)), 8, 4096))


def activation_bytes(device: torch.device | str) -> int:
    """The activation memory budget of one batch on ``device``.

    On CUDA, :data:`CUDA_FREE_FRACTION` of the memory free on that device now
    (``torch.cuda.mem_get_info``), at least :data:`MIN_ACTIVATION_BYTES`; elsewhere
    :data:`ACTIVATION_BYTES` (the CPU's for unknown device types).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(MIN_ACTIVATION_BYTES, int(free * CUDA_FREE_FRACTION))
    return ACTIVATION_BYTES.get(device.type, ACTIVATION_BYTES["cpu"])


def activation_token_budget(lm: LM) -> int:
    """Padded tokens per batch that fit the activation budget of ``lm``'s devices.

    A model spread over several devices gets the smallest of their budgets.
    """
    config = lm.model.config.get_text_config()
    hidden = lm.arch.unembed_weight.shape[1]
    ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) \
        or 4 * hidden
    # residual stream copies, attention, MLP, in the model's dtype
    bytes_per_token = lm.dtype.itemsize * (8 * hidden + 3 * ffn)
    return max(64, min(map(activation_bytes, lm.devices)) // bytes_per_token)


def backbone_kwargs(lm: LM) -> dict:
    """What every backbone forward passes besides its inputs: no KV cache for causal LMs."""
    return {} if lm.is_masked else {"use_cache": False}


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device out-of-memory error (CUDA's, or another backend's text)."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def halves(rows: Item) -> list[Item]:
    """A batch of rows (anything sliceable: an index array, a list) split in two, in order.

    A single row cannot be split: ``[]`` (then :func:`iter_halving` raises the error).
    """
    half = len(rows) // 2
    return [rows[:half], rows[half:]] if half else []


def iter_halving(items: Sequence[Item], fn: Callable[[Item], Any],
                 split: Callable[[Item], list[Item]] = halves,
                 device: torch.device | str = "cpu") -> Iterator[tuple[Item, Any]]:
    """Apply ``fn`` to each item in order, lazily; an item that runs out of memory is split.

    Args:
        items: the work, e.g. batches of row indices (not modified).
        fn: the computation for one item.
        split: an item's replacement on out-of-memory (default :func:`halves`); an empty list
            or a single item means it cannot be split, and the error is raised.
        device: where ``fn`` runs (CUDA's cache is emptied before a retry).

    Yields:
        ``(item, fn(item))`` for every item actually run, in order (split items replaced by
        their parts), each as soon as it is computed. Errors other than out-of-memory
        propagate at once.
    """
    pending = list(items)
    while pending:
        item = pending.pop(0)
        try:
            result = fn(item)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            parts = split(item)
            if len(parts) < 2:
                raise
        else:
            yield item, result
            del result  # not held while the next item runs
            continue
        # Out of the handler the error's traceback, and the failed attempt's tensors it holds,
        # are gone: only now can CUDA's cache give their memory back.
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
        pending[:0] = parts


def halve_on_oom(items: Sequence[Item], fn: Callable[[Item], Any],
                 split: Callable[[Item], list[Item]],
                 device: torch.device | str) -> list[tuple[Item, Any]]:
    """Apply ``fn`` to each item in order; an item that runs out of memory is split and retried.

    :func:`iter_halving`, run to the end: ``(item, fn(item))`` for every item actually run, in
    order (split items replaced by their parts).
    """
    return list(iter_halving(items, fn, split, device))
