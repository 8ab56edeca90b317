"""Greedy continuation of a prompt for as many tokens as its target word has.

The memorization test scores only the target's *first* sub-token; for a target split into several
sub-tokens, :func:`whole_word_continuation` checks whether greedy decoding produces the whole
word. How many sub-tokens a target spans is :func:`memrecall.probes.target_token_counts` (the
same first-token-after-the-prompt rule as :func:`memrecall.make_probes`); the padding is
:func:`memrecall.forward.batching.pad_left`, the batches follow the package's one rule (a memory
budget, halved on out-of-memory: :func:`memrecall.forward.batching.halve_on_oom`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..models import LM
from ..probes import target_token_counts
from .batching import (
    activation_token_budget,
    check_batch_size,
    halve_on_oom,
    halves,
    model_inputs,
    pad_left,
)

__all__ = ["whole_word_continuation"]


def whole_word_continuation(lm: LM, probes: pd.DataFrame,
                            batch_size: int | None = None) -> pd.DataFrame:
    """Greedy continuation of each prompt for as many tokens as its target word has.

    The model reads exactly what :func:`memrecall.project` reads (the tokenizer's own special
    tokens, no extra context). Prompts are left-padded in batches of equal target length and
    decoded step by step with argmax (no sampling, no KV cache: targets are a few tokens; only
    the last position's logits are computed).

    Args:
        lm: a causal :class:`memrecall.LM` (masked LMs predict one mask, not a continuation).
        probes: :func:`memrecall.make_probes` output (``prompt``, ``target``), or
            :func:`memrecall.project` output: then its ``pred_token`` is taken as the first
            greedy token (no forward pass for single-token targets, and exactly consistent
            with ``is_memorized``).
        batch_size: prompts per forward pass, cut in order within each target length; by
            default as many as the activation budget allows for that group's longest
            sequence (prompt plus target tokens). On out-of-memory a batch is halved and
            retried (its rows in the same order).

    Returns:
        One row per probe, same order and index: ``n_target_tokens``, ``first_token`` (the
        greedy next token, the same as ``pred_token`` of :func:`memrecall.project` up to float
        rounding),
        ``continuation`` (the decoded tokens, stripped) and ``whole_word`` (``continuation ==
        target``).

    Raises:
        ValueError: ``lm`` is a masked LM, a bad ``batch_size`` (see
            :func:`memrecall.forward.batching.check_batch_size`), or a prompt that with its
            target's tokens does not fit the model's context window (the last step reads the
            prompt and all but the last target token; the message names the row).

    """
    if lm.is_masked:
        raise ValueError(f"{lm.name} is a masked LM: greedy continuation needs a causal LM")
    batch_size = check_batch_size(batch_size)
    frame = probes.reset_index(drop=True)
    counts = target_token_counts(frame, lm.tokenizer)
    ids, _ = model_inputs(lm, frame["prompt"].astype(str).tolist())
    limit = lm.max_length
    for row, (tokens, n_target) in enumerate(zip(ids, counts, strict=True)):
        if limit is not None and len(tokens) + int(n_target) - 1 > limit:
            raise ValueError(
                f"row {row}: the prompt is {len(tokens)} tokens long (as {lm.name} reads it) and "
                f"its target {int(n_target)} tokens, more than the context window of {limit} "
                f"tokens that greedy continuation reads; shorten it or drop the row (it starts "
                f"{str(frame['prompt'].iloc[row])[:60]!r})")
    pad = lm.tokenizer.pad_token_id
    pad = pad if pad is not None else (lm.tokenizer.eos_token_id or 0)
    known = frame["pred_token"].to_numpy(dtype=np.int64) if "pred_token" in frame else None
    generated: list[list[int]] = [[] for _ in ids]
    budget = activation_token_budget(lm) if batch_size is None else 0

    def run(batch: np.ndarray) -> None:
        seqs = [list(ids[i]) for i in batch]
        if known is not None:
            for seq, i in zip(seqs, batch, strict=True):
                seq.append(int(known[i]))
        for _ in range(int(counts[batch[0]]) - (known is not None)):
            input_ids, mask = pad_left(seqs, pad, lm.device)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = lm.model(input_ids=input_ids, attention_mask=mask,
                              position_ids=positions, use_cache=False,
                              logits_to_keep=1).logits[:, -1]
            for seq, token in zip(seqs, logits.argmax(-1).tolist(), strict=True):
                seq.append(int(token))
        for i, seq in zip(batch, seqs, strict=True):
            generated[i] = seq[len(ids[i]):]

    batches = []
    for n_steps in np.unique(counts):
        rows = np.flatnonzero(counts == n_steps)
        size = batch_size or max(1, budget // (max(len(ids[i]) for i in rows) + int(n_steps)))
        batches += [rows[start : start + size] for start in range(0, len(rows), size)]
    with torch.inference_mode():
        halve_on_oom(batches, run, halves, lm.device)
    continuation = [lm.tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated]
    targets = frame["target"].astype(str).str.strip().tolist()
    return pd.DataFrame({
        "n_target_tokens": counts,
        "first_token": [g[0] for g in generated],
        "continuation": continuation,
        "whole_word": [c == t for c, t in zip(continuation, targets, strict=True)],
    }, index=probes.index)
