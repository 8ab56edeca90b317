"""Attention-edge knockouts: what the prediction position may not read, per row and layer.

Geva et al. 2023 ("Dissecting Recall of Factual Associations") block the attention edges from
the last position to chosen earlier positions in a window of layers and watch the prediction.
:func:`blocked_edges` does it for a batch, each row with its own edges and layers, through the
attention functions' own mask: inside the block, every self-attention module calls a wrapper
(registered with transformers' ``AttentionInterface``) around the model's own attention function
(SDPA, eager, ...), which

1. runs it unchanged on the whole batch, then
2. for the rows that block, in this layer, at least one key the query at their position could
   read (the model's mask, causal and sliding-window, allows it), runs it again for that one
   query with those keys masked out (all heads), and puts the result in place.

So every other position, every other row and every layer without a blocked edge is bit for bit
the clean run, and a blocked key the model's mask already hides (outside a sliding window)
changes nothing at all. Only the prediction position's residual stream changes; that is the
only one read out (:meth:`memrecall.interventions.CleanRun.forward_rows` resumes at the window's
first block).

:func:`source_positions` gives the token positions of each probe's source sets, from the words of
its prompt: ``content`` (words not in scikit-learn's English stop-word list), ``function`` (the
rest), ``first`` (the first token: BOS where the model has one) and ``previous`` (every position
before the prediction position); the prediction position itself is never a source.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..forward.batching import model_inputs
from ..models import LM

__all__ = ["SOURCE_SETS", "blocked_edges", "source_positions"]

SOURCE_SETS = ("content", "function", "first", "previous")
"""The source sets of an attention-edge knockout (:func:`source_positions`)."""

_PREFIX = "memrecall_edges_"
# attention module -> (edges (rows, keys) bool, positions (rows,)) while a block is active
_PLANS: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}


def _original_function(module: nn.Module, name: str) -> Callable:
    """The attention function ``name`` as the module would have called it (eager: its own)."""
    if name != "eager" and name in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[name]
    return sys.modules[type(module).__module__].eager_attention_forward


def _allowed_at(mask: torch.Tensor | None, positions: torch.Tensor, keys: int) -> torch.Tensor:
    """``(rows, keys)`` bool: which keys the model's own mask lets each row's query read."""
    if mask is None:  # the causal default (no padding, no binding window)
        return torch.arange(keys, device=positions.device) <= positions[:, None]
    rows = torch.arange(len(positions), device=mask.device)
    row = mask.expand(len(positions), *mask.shape[1:])[rows, 0, positions, :keys]
    return row if row.dtype == torch.bool else row > torch.finfo(row.dtype).min / 2


def _query_mask(mask: torch.Tensor | None, batch: int, rows: torch.Tensor,
                positions: torch.Tensor, allowed: torch.Tensor, name: str,
                dtype: torch.dtype) -> torch.Tensor:
    """The mask of one query per row: ``allowed`` keys only, as the original function takes it.

    ``rows`` and ``positions`` index the batch (of ``batch`` rows) and its queries; ``allowed``
    is ``(rows, keys)``. A boolean mask (SDPA's), or an additive one (0 / the dtype's minimum)
    where the model gave one or the function is eager.
    """
    if mask is not None and mask.dtype != torch.bool:
        row = mask.expand(batch, *mask.shape[1:])[rows, :, positions, :allowed.shape[1]]
        return row.masked_fill(~allowed[:, None, :], torch.finfo(row.dtype).min).unsqueeze(2)
    if mask is None and name == "eager":
        zero = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return zero.masked_fill(~allowed, torch.finfo(dtype).min)[:, None, None, :]
    return allowed[:, None, None, :]


def _edge_attention(name: str) -> Callable:
    """The wrapper around attention function ``name`` (see the module docstring)."""

    def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: torch.Tensor | None,
                  **kwargs: Any) -> tuple[torch.Tensor, Any]:
        original = _original_function(module, name)
        output, weights = original(module, query, key, value, attention_mask, **kwargs)
        plan = _PLANS.get(module)
        if plan is None:
            return output, weights
        edges, positions = plan
        allowed = _allowed_at(attention_mask, positions, key.shape[2])
        rows = (edges & allowed).any(1).nonzero().squeeze(1)
        if len(rows) == 0:
            return output, weights
        where = positions[rows]
        mask = _query_mask(attention_mask, len(positions), rows, where,
                           allowed[rows] & ~edges[rows], name, query.dtype)
        single = {k: v for k, v in kwargs.items() if k != "is_causal"}
        again, _ = original(module, query[rows, :, where].unsqueeze(2), key[rows], value[rows],
                            mask, is_causal=False, **single)
        output = output.clone()
        output[rows, where] = again[:, 0]  # (batch, query, heads, head_dim)
        return output, weights

    return attention


def _registered(name: str) -> str:
    """The wrapper's name for attention function ``name``, registered once."""
    key = _PREFIX + name
    if key not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(key, _edge_attention(name))
        mask_function = ALL_MASK_ATTENTION_FUNCTIONS.get(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        AttentionMaskInterface.register(key, mask_function)
    return key


@contextmanager
def blocked_edges(lm: LM, edges: torch.Tensor, positions: torch.Tensor) -> Iterator[None]:
    """Inside the block, no query at ``positions[r]`` reads a key of ``edges[r, l]`` in layer l.

    All heads; row ``r`` of every forward run inside the block is row ``r`` of ``edges`` (see
    the module docstring).

    Args:
        lm: a decoder (causal LM).
        edges: ``(rows, n_layers, seq)`` bool, the keys (token positions) blocked per row and
            layer; a row's own position is never blocked (it is ignored if set).
        positions: ``(rows,)`` the query position of each row (its prediction position).

    Raises:
        ValueError: a masked LM, or shapes that do not match the model.
        RuntimeError: the block is entered again while active.
    """
    if lm.is_masked:
        raise ValueError(f"{lm.name} is a masked LM: attention edges are blocked in decoders")
    if edges.ndim != 3 or edges.shape[1] != lm.n_layers or len(positions) != len(edges):
        raise ValueError(f"edges must be (rows, {lm.n_layers}, seq) with one position per row; "
                         f"got {tuple(edges.shape)} and {len(positions)} positions")
    modules = [lm.arch.attention(layer) for layer in range(lm.n_layers)]
    configs = list({id(m.config): m.config for m in modules}.values())
    before = [config._attn_implementation for config in configs]
    if _PLANS or any((name or "").startswith(_PREFIX) for name in before):
        raise RuntimeError("blocked_edges is already active; one block at a time")
    edges = edges.clone()
    rows = torch.arange(len(positions), device=edges.device)
    edges[rows, :, positions.to(edges.device)] = False  # self is never blocked
    try:
        for config, name in zip(configs, before, strict=True):
            config._attn_implementation_internal = _registered(name or "eager")
        for layer, module in enumerate(modules):
            if edges[:, layer].any():
                device = next(module.parameters()).device
                _PLANS[module] = (edges[:, layer].to(device), positions.to(device))
        yield
    finally:
        _PLANS.clear()
        for config, name in zip(configs, before, strict=True):
            config._attn_implementation_internal = name


def _is_function_word(word: str) -> bool:
    """A stop word of scikit-learn's English list, once lower-cased and stripped of punctuation."""
    return re.sub(r"^\W+|\W+$", "", word.lower()) in ENGLISH_STOP_WORDS


def source_positions(lm: LM, prompts: Sequence[str]) -> dict[str, list[list[int]]]:
    """Each prompt's source sets as token positions, as the model reads the prompt.

    Tokens are mapped to words through the tokenizer's character offsets (a token belongs to
    every word its span overlaps; special tokens to none). Only positions before the prediction
    position (:func:`memrecall.forward.model_inputs`) are sources.

    Args:
        lm: a decoder with a fast tokenizer (character offsets).
        prompts: the probes' prompts.

    Returns:
        :data:`SOURCE_SETS` name -> one sorted list of positions per prompt.

    Raises:
        ValueError: the tokenizer gives no character offsets.
    """
    ids, positions = model_inputs(lm, prompts)
    if not getattr(lm.tokenizer, "is_fast", False):
        raise ValueError(f"{lm.name}: source sets need a fast tokenizer (character offsets)")
    offsets = lm.tokenizer(list(prompts), add_special_tokens=True,
                           return_offsets_mapping=True)["offset_mapping"]
    out: dict[str, list[list[int]]] = {name: [] for name in SOURCE_SETS}
    for prompt, spans, tokens, position in zip(prompts, offsets, ids, positions, strict=True):
        if len(spans) != len(tokens):
            raise ValueError(f"{lm.name}: offsets and tokens of {prompt!r} disagree")
        words = [(m.start(), m.end(), _is_function_word(m.group()))
                 for m in re.finditer(r"\S+", prompt)]
        kinds: dict[str, list[int]] = {"content": [], "function": []}
        for index, (start, end) in enumerate(spans[:position]):
            for word_start, word_end, function in words:
                if start < word_end and end > word_start and end > start:
                    kinds["function" if function else "content"].append(index)
        for kind, found in kinds.items():
            out[kind].append(sorted(set(found)))
        out["first"].append([0] if position > 0 else [])
        out["previous"].append(list(range(position)))
    return out
