"""Layer-wise projection ("logit lens"): every block's output read through the model's own head.

Entry ``i`` of every per-layer array is the hidden state after block ``i`` at the prediction
position, passed through the final norm (BERT: the whole MLM head) and the unembedding, so entry
``n_layers - 1`` is exactly the model's output distribution. That is the logit lens, the default
:class:`Lens`; a fitted lens (:mod:`memrecall.lenses`) first moves every block output but the
last, so entry ``n_layers - 1`` stays the model's own under every lens.

How it stays fast and bounded (see ``make bench``):

* prompts are sorted by length and batched under a token budget, so padding costs little;
* only the backbone runs (no LM head over every position); hooks keep one vector per block
  per prompt, so activations of other positions are freed as the forward goes;
* ranks are counted (number of strictly larger logits), never sorted, and the vocabulary is
  streamed in tiles by the model's :class:`~memrecall.models.head.Head` (rows x vocabulary
  chunk, one reused buffer, cache-sized on CPU) reduced in place: an online log-sum-exp, the
  counts and the argmax in one pass per tile, so no (layers x prompts x vocab) tensor ever
  exists;
* two vocabulary passes per batch, each layer's rows read once: the last layer (argmax,
  normaliser, target rank), then the earlier layers (ranks of prediction and target);
* batches are cut where padding would cost more than one more batch
  (:func:`memrecall.forward.batching.plan_batches`), and halved on out-of-memory like every
  forward loop of the package (:func:`memrecall.forward.batching.halve_on_oom`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..forward.batching import (
    activation_token_budget,
    batch_overhead_tokens,
    check_batch_size,
    halve_on_oom,
    halves,
    model_inputs,
    plan_batches,
)
from ..forward.blocks import block_outputs
from ..models import LM
from ..models.finite import check_finite
from ..models.head import Head
from ..runmode import progress_bar
from .base import Lens

__all__ = ["LensStats", "layer_logits", "layer_top_k", "lens_stats", "project",
           "reference_logits", "top_k_tokens"]


@dataclass
class LensStats:
    """Per-layer statistics of one batch; arrays are ``(n_layers, batch)``."""

    pred_token: torch.Tensor  # (batch,)
    pred_rank: torch.Tensor
    pred_prob: torch.Tensor
    target_rank: torch.Tensor | None
    target_prob: torch.Tensor | None


def lens_stats(lm: LM, hidden: torch.Tensor, targets: torch.Tensor | None = None,
               head: Head | None = None, *, rows: Sequence[int] | None = None,
               prompts: Sequence[str] | None = None) -> LensStats:
    """Project per-layer hidden states of a batch and score the prediction and the target.

    Two passes over the vocabulary, each layer's rows read once: the last layer (argmax, its
    normaliser, the target's rank), then every earlier layer (ranks of prediction and target).

    Args:
        lm: the model.
        hidden: ``(n_layers, batch, d)`` block outputs at the prediction positions.
        targets: ``(batch,)`` target token ids, or None for plain prompts.
        head: the read-out to use (default ``lm.head``; tile sizes are its parameters).
        rows: the prompt index of each row of the batch (for error messages only).
        prompts: every prompt, indexed by ``rows`` (for error messages only).

    Raises:
        NonFiniteError: a NaN or inf normed hidden state or logit (names the model, its
            dtype, the 1-based layer and the first affected prompt).
    """
    head = head or lm.head
    n_layers, batch, _ = hidden.shape
    normed = head.normalize(hidden)
    # NaN would read as rank 0 (nothing is larger than NaN): one check per batch, on tensors
    # already computed (the normed states; each layer's log-normaliser, which any NaN or inf
    # logit turns non-finite), never another pass over the vocabulary.
    check_finite(lm, normed, "normed hidden state", layers=range(n_layers), rows=rows,
                 prompts=prompts)
    has_target = targets is not None
    no_tokens = torch.empty(batch, 0, dtype=torch.int64, device=hidden.device)
    last = head.scan(normed[-1], targets.view(batch, 1) if has_target else no_tokens,
                     argmax=True)
    log_norms = [last.log_norm.view(1, batch)]
    pred = last.pred
    # At the last layer the prediction is the argmax by definition: its rank is 0 and its
    # probability comes from the logit that chose it, not from a recomputed, rounded one.
    pred_rank = torch.zeros(n_layers, batch, dtype=torch.int64, device=hidden.device)
    pred_prob = torch.empty(n_layers, batch, device=hidden.device)
    pred_prob[-1] = torch.exp(last.best - last.log_norm)
    if has_target:
        target_rank = torch.empty(n_layers, batch, dtype=torch.int64, device=hidden.device)
        target_prob = torch.empty(n_layers, batch, device=hidden.device)
        target_rank[-1] = last.larger[:, 0]
        target_prob[-1] = torch.exp(last.own[:, 0] - last.log_norm)
    if n_layers > 1:
        tokens = pred.view(batch, 1) if not has_target else torch.stack([pred, targets], 1)
        scan = head.scan(normed[:-1].reshape(-1, normed.shape[-1]),
                         tokens.repeat(n_layers - 1, 1))
        log_norms.insert(0, scan.log_norm.view(n_layers - 1, batch))
        ranks = scan.larger.view(n_layers - 1, batch, -1)
        probs = torch.exp(scan.own - scan.log_norm.unsqueeze(1)).view(n_layers - 1, batch, -1)
        pred_rank[:-1], pred_prob[:-1] = ranks[..., 0], probs[..., 0]
        if has_target:
            target_rank[:-1], target_prob[:-1] = ranks[..., 1], probs[..., 1]
    check_finite(lm, torch.cat(log_norms), "logit", layers=range(n_layers), rows=rows,
                 prompts=prompts)
    return LensStats(
        pred_token=pred,
        pred_rank=pred_rank,
        pred_prob=pred_prob,
        target_rank=target_rank if has_target else None,
        target_prob=target_prob if has_target else None,
    )


@torch.inference_mode()
def reference_logits(lm: LM, prompt: str) -> torch.Tensor:
    """Every layer's full logits for one prompt, the obvious slow way: ``(n_layers, vocab)``.

    One whole-model forward keeping every hidden state; each block output at the prediction
    position through the head; the last row is the model's own output. The exactness tests and
    the authors'-style baseline of ``make bench`` compare :func:`project` against this.
    """
    ids, positions = model_inputs(lm, [prompt])
    out = lm.model(input_ids=torch.tensor(ids, device=lm.device), output_hidden_states=True)
    position = positions[0]
    # hidden_states: embeddings, then each block's output, the last one already normed
    rows = [lm.head.logits(lm.head.normalize(hidden[0, position : position + 1]))[0]
            for hidden in out.hidden_states[1:-1]]
    rows.append(out.logits[0, position].float())
    return torch.stack(rows)


def layer_logits(lm: LM, prompt: str, lens: Lens | None = None) -> torch.Tensor:
    """Every layer's logits at the prediction position of one prompt: ``(n_layers, vocab)`` float32.

    Same lens and inputs as :func:`memrecall.project` (causal LMs predict after the prompt,
    masked LMs at ``prompt + " [MASK]."``; block outputs through ``lm.head``), so the last row
    is the model's own output.

    Args:
        lm: a loaded model.
        prompt: one prompt (e.g. an idiom without its last word).
        lens: None for the logit lens, or a fitted lens (checked against ``lm`` first, as
            :func:`project` checks it).

    Raises:
        NonFiniteError: a NaN or inf logit (names the 1-based layer).
    """
    if lens is not None:
        lens.check(lm)
    ids, positions = model_inputs(lm, [prompt])
    with torch.inference_mode():
        hidden = block_outputs(lm, ids, positions)  # (n_layers, 1, d)
        if lens is not None:
            hidden = lens.transform(hidden)
        logits = lm.head.logits(lm.head.normalize(hidden[:, 0])).float()
    check_finite(lm, logits.unsqueeze(1), "logit", layers=range(lm.n_layers), prompts=[prompt])
    return logits


def layer_top_k(lm: LM, prompt: str, k: int = 5,
                lens: Lens | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` token ids and probabilities of every layer at the prediction position.

    Args:
        lm: a loaded model.
        prompt: one prompt.
        k: tokens per layer.
        lens: as in :func:`layer_logits`.

    Returns:
        ``ids`` ``(n_layers, k)`` int64 and ``probs`` ``(n_layers, k)`` float32, best first;
        row ``i`` is (0-based) layer ``i``.

    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return top_k_tokens(torch.softmax(layer_logits(lm, prompt, lens), dim=-1), k)


def top_k_tokens(probs: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, vocab)`` probabilities -> top-``k`` ids and probabilities per row, best first."""
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()


def project(lm: LM, probes: pd.DataFrame | Sequence[str], *, batch_size: int | None = None,
            progress: bool | None = None, head: Head | None = None,
            lens: Lens | None = None) -> pd.DataFrame:
    """Layer-wise ranks and probabilities of the model's prediction (and of the target).

    Args:
        lm: a loaded model (:func:`memrecall.load` or :func:`memrecall.wrap`).
        probes: the output of :func:`memrecall.make_probes` (``prompt`` and ``target_token``
            columns), or plain prompts.
        batch_size: at most this many prompts per forward pass; by default as many as fit the
            device's activation budget. On out-of-memory the batch is halved and retried.
        progress: show a progress bar (default: when there are more than 64 prompts).
        head: the read-out (default ``lm.head``); pass ``Head(lm.arch, tile_rows=...)`` to
            choose the vocabulary-scan tiles (speed and memory only, never the numbers).
        lens: how each layer is read (default :class:`LogitLens`: as it is); a fitted lens
            from :mod:`memrecall.lenses` moves every block output but the last one first.

    Returns:
        One row per probe, same order and same index: the probe columns plus ``pred_token``,
        and the per-layer numpy arrays (length ``n_layers``) ``pred_rank``, ``pred_prob``; with
        targets also ``is_memorized``, ``target_rank``, ``target_prob``. No probes give an empty
        frame with these columns.

    Raises:
        ValueError: a bad ``batch_size``, or a prompt longer than the model's context window
            (names the row, its length and the limit).
        NonFiniteError: a NaN or inf in a layer's normed hidden state or logits (names the
            model, its dtype, the 1-based layer and the first affected prompt; float16
            overflow in Gemma 3 is the usual cause).
    """
    batch_size = check_batch_size(batch_size)
    if isinstance(probes, str):
        raise TypeError("project takes a list of prompts or a probe frame, not a single string")
    frame = (probes.copy() if isinstance(probes, pd.DataFrame)
             else pd.DataFrame({"prompt": list(probes)}, dtype=object))
    if "prompt" not in frame.columns:
        raise ValueError("project needs a `prompt` column (use memrecall.make_probes)")
    prompts = frame["prompt"].astype(str).tolist()
    has_target = "target_token" in frame.columns
    targets = torch.tensor(frame["target_token"].to_numpy(dtype=np.int64)) if has_target else None

    if lens is not None:
        lens.check(lm)
    ids, positions = model_inputs(lm, prompts)
    n = len(ids)
    n_layers = lm.n_layers
    out = {"pred_token": np.zeros(n, dtype=np.int64),
           "pred_rank": np.zeros((n, n_layers), dtype=np.int64),
           "pred_prob": np.zeros((n, n_layers), dtype=np.float32)}
    if has_target:
        out["target_rank"] = np.zeros((n, n_layers), dtype=np.int64)
        out["target_prob"] = np.zeros((n, n_layers), dtype=np.float32)

    batches = plan_batches([len(r) for r in ids], activation_token_budget(lm), batch_size,
                           batch_overhead_tokens(lm))
    show = progress if progress is not None else n > 64
    bar = progress_bar(total=n, desc=f"project {lm.name}", unit="prompt", disable=not show)

    def run(rows: np.ndarray) -> None:
        hidden = block_outputs(lm, [ids[i] for i in rows], [positions[i] for i in rows])
        if lens is not None:
            hidden = lens.transform(hidden)
        stats = lens_stats(lm, hidden, None if targets is None else targets[rows].to(lm.device),
                           head=head, rows=rows, prompts=prompts)
        out["pred_token"][rows] = stats.pred_token.cpu().numpy()
        out["pred_rank"][rows] = stats.pred_rank.T.cpu().numpy()
        out["pred_prob"][rows] = stats.pred_prob.T.cpu().numpy()
        if has_target:
            out["target_rank"][rows] = stats.target_rank.T.cpu().numpy()
            out["target_prob"][rows] = stats.target_prob.T.cpu().numpy()
        bar.update(len(rows))

    with torch.inference_mode(), bar:
        halve_on_oom(batches, run, halves, lm.device)

    frame["pred_token"] = out["pred_token"]
    if has_target:
        frame["is_memorized"] = frame["pred_token"].to_numpy() == frame["target_token"].to_numpy()
    for column in ("pred_rank", "pred_prob", "target_rank", "target_prob"):
        if column in out:
            frame[column] = list(out[column]) if n else pd.Series(dtype=object)
    return frame
