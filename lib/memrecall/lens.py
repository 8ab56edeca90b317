"""Layer-wise projection ("logit lens"): every block's output read through the model's own head.

Entry ``i`` of every per-layer array is the hidden state after block ``i`` at the prediction
position, passed through the final norm (BERT: the whole MLM head) and the unembedding, so entry
``n_layers - 1`` is exactly the model's output distribution.

How it stays fast and bounded (see ``make bench``):

* prompts are sorted by length and batched under a token budget, so padding costs little;
* only the backbone runs (no LM head over every position); hooks keep one vector per block
  per prompt, so activations of other positions are freed as the forward goes;
* ranks are counted (number of strictly larger logits), never sorted, and the vocabulary is
  streamed in tiles (rows x vocabulary chunk, one reused buffer, cache-sized on CPU) reduced in
  place: an online log-sum-exp, the counts and the argmax in one pass per tile, so no
  (layers x prompts x vocab) tensor ever exists;
* two vocabulary passes per batch, each layer's rows read once: the last layer (argmax,
  normaliser, target rank), then the earlier layers (ranks of prediction and target);
* batches are cut where padding would cost more than one more batch (:func:`plan_batches`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .hooks import capture_at_positions
from .models import LM
from .progress import progress_bar

LENS_COLUMNS = ["pred_token", "is_memorized", "pred_rank", "pred_prob", "target_rank",
                "target_prob"]

# Working memory for one tile of logits (rows x vocabulary chunk), and for a batch's activations.
LOGIT_CHUNK_BYTES = 256 * 2**20
# On CPU a tile is reduced while it is still in (last-level) cache: at most this many rows and
# bytes. Smaller tiles fit L2 but multiply the parallel regions, which a busy machine punishes.
CPU_TILE_ROWS = 4096
CPU_TILE_BYTES = 64 * 2**20
# What one more batch costs beyond its tokens (a forward's fixed cost, two passes over the
# unembedding), in tokens: plan_batches trades it against padding. See batch_overhead_tokens.
BATCH_OVERHEAD_TOKENS = 64
ACTIVATION_BYTES = {"cpu": 1 * 2**30, "cuda": 4 * 2**30}


@dataclass
class LensStats:
    """Per-layer statistics of one batch; arrays are ``(n_layers, batch)``."""

    pred_token: torch.Tensor  # (batch,)
    pred_rank: torch.Tensor
    pred_prob: torch.Tensor
    target_rank: torch.Tensor | None
    target_prob: torch.Tensor | None


def model_inputs(lm: LM, prompts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
    """Token ids the model reads for each prompt, and the position whose output is the prediction.

    Causal LMs read the prompt (with whatever BOS the tokenizer adds) and predict at its last
    token; masked LMs read ``prompt + " " + mask + "."`` and predict at the mask.
    """
    tokenizer = lm.tokenizer
    if lm.is_masked:
        texts = [f"{p} {tokenizer.mask_token}." for p in prompts]
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        positions = [row.index(tokenizer.mask_token_id) for row in ids]
    else:
        ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        positions = [len(row) - 1 for row in ids]
    for row, tokens in enumerate(ids):
        if not tokens:
            raise ValueError(f"row {row}: prompt {prompts[row]!r} tokenizes to nothing")
    return ids, positions


def plan_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None,
                 overhead_tokens: int = BATCH_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Group row indices, longest first, so that ``rows x longest`` stays under ``max_tokens``.

    Rows are sorted by length and cut into consecutive batches that minimise the padded tokens
    plus ``overhead_tokens`` per batch (the fixed cost of one forward and one vocabulary pass,
    counted in tokens): rows of equal length share a batch with no padding at all, and a few
    odd lengths join a neighbour rather than run alone. Exact (dynamic programming over cuts).
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    n = len(order)
    if n == 0:
        return []
    sorted_lengths = np.asarray(lengths, dtype=np.int64)[order]
    row_cap = n if max_rows is None else max(1, max_rows)
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


def activation_token_budget(lm: LM) -> int:
    """Padded tokens per batch that fit the activation memory budget of ``lm``'s device."""
    config = lm.model.config.get_text_config()
    hidden = lm.arch.unembed_weight.shape[1]
    ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) \
        or 4 * hidden
    bytes_per_token = 4 * (8 * hidden + 3 * ffn)  # residual stream copies, attention, MLP
    budget = ACTIVATION_BYTES.get(lm.device.type, ACTIVATION_BYTES["cpu"])
    return max(64, budget // bytes_per_token)


def _logits(lm: LM, hidden: torch.Tensor, start: int, stop: int,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of vocabulary slice ``[start, stop)``: ``(rows, d) -> (rows, stop - start)``.

    ``out``, if given, is a contiguous ``(rows, stop - start)`` float32 buffer to write into.
    """
    arch = lm.arch
    weight = arch.unembed_weight[start:stop]
    if weight.dtype != hidden.dtype:
        weight = weight.to(hidden.dtype)
    logits = torch.mm(hidden, weight.T, out=out) if out is not None else hidden @ weight.T
    if arch.unembed_bias is not None:
        logits += arch.unembed_bias[start:stop].to(logits.dtype)
    if arch.logit_softcap:
        logits.div_(arch.logit_softcap).tanh_().mul_(arch.logit_softcap)
    return logits


def _token_logits(lm: LM, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logit of one token per row: ``(rows, d), (rows,) -> (rows,)``."""
    arch = lm.arch
    logits = (hidden * arch.unembed_weight[tokens].float()).sum(-1)
    if arch.unembed_bias is not None:
        logits += arch.unembed_bias[tokens].float()
    if arch.logit_softcap:
        logits = torch.tanh(logits / arch.logit_softcap) * arch.logit_softcap
    return logits


def _tile_bytes(lm: LM) -> int:
    """Bytes of one tile of logits: cache-sized on CPU, up to ``LOGIT_CHUNK_BYTES`` elsewhere."""
    if lm.device.type == "cpu":
        return min(LOGIT_CHUNK_BYTES, CPU_TILE_BYTES)
    return LOGIT_CHUNK_BYTES


def _row_tiles(lm: LM, rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges scanned together; on CPU small enough that a tile of logits stays in cache."""
    size = CPU_TILE_ROWS if lm.device.type == "cpu" else rows
    size = max(1, min(size, rows))
    for start in range(0, rows, size):
        yield start, min(start + size, rows)


def _chunks(lm: LM, rows: int) -> Iterator[tuple[int, int]]:
    """Vocabulary ranges of one tile of logits for ``rows`` rows."""
    vocab = lm.vocab_size
    size = max(1024, _tile_bytes(lm) // (4 * max(rows, 1)))
    for start in range(0, vocab, size):
        yield start, min(start + size, vocab)


@dataclass
class _Scan:
    """What one streaming pass over the vocabulary learns about each row (see :func:`_scan`)."""

    log_norm: torch.Tensor  # (rows,) log of the softmax normaliser
    own: torch.Tensor  # (rows, k) logits of the scored tokens
    larger: torch.Tensor  # (rows, k) int64: logits strictly larger than ``own``
    best: torch.Tensor | None  # (rows,) largest logit (with ``argmax``)
    pred: torch.Tensor | None  # (rows,) its token id, lowest on ties (with ``argmax``)


def _scan(lm: LM, hidden: torch.Tensor, tokens: torch.Tensor, argmax: bool = False) -> _Scan:
    """One pass over the vocabulary: normaliser, ranks of ``tokens`` and optionally the argmax.

    The logits are computed tile by tile (rows x vocabulary chunk, into one reused buffer) and
    reduced in place: an online log-sum-exp, a count of strictly larger logits per scored token
    (ranks without sorting) and a running maximum, so the full logits never exist and, on CPU,
    each tile is reduced while it is still in cache.

    Args:
        lm: the model whose unembedding (and bias, soft-cap) makes the logits.
        hidden: ``(rows, d)`` normed hidden states, float32.
        tokens: ``(rows, k)`` token ids to rank per row (``k`` may be 0).
        argmax: also find each row's largest logit and its token.
    """
    rows, k = tokens.shape
    device = hidden.device
    log_norm = torch.empty(rows, device=device)
    own = torch.empty(rows, k, device=device)
    larger = torch.zeros(rows, k, dtype=torch.int64, device=device)
    best = torch.empty(rows, device=device) if argmax else None
    pred = torch.empty(rows, dtype=torch.int64, device=device) if argmax else None
    buffer = mask = None
    for r0, r1 in _row_tiles(lm, rows):
        h, tok = hidden[r0:r1].contiguous(), tokens[r0:r1]
        n = r1 - r0
        if k:
            own[r0:r1] = _token_logits(lm, h.repeat_interleave(k, 0), tok.reshape(-1)).view(n, k)
        threshold = own[r0:r1]
        run_max = torch.full((n,), -torch.inf, device=device)
        run_sum = torch.zeros(n, device=device)
        count = larger[r0:r1]
        if argmax:
            top = torch.full((n,), -torch.inf, device=device)
            top_id = torch.zeros(n, dtype=torch.int64, device=device)
        for start, stop in _chunks(lm, n):
            width = stop - start
            if buffer is None or buffer.numel() < n * width:
                buffer = torch.empty(n * width, device=device)
                mask = torch.empty(n * width, device=device)
            logits = _logits(lm, h, start, stop, out=buffer[: n * width].view(n, width))
            hits = mask[: n * width].view(n, width)
            for j in range(k):
                # float 0/1 and a float sum: faster than a bool mask and an integer sum
                count[:, j] += torch.gt(logits, threshold[:, j : j + 1], out=hits).sum(1).long()
                # The token itself must not count against itself, whatever the matmul rounding.
                inside = (tok[:, j] >= start) & (tok[:, j] < stop)
                local = (tok[:, j] - start).clamp(0, width - 1).unsqueeze(1)
                count[:, j] -= (inside & (logits.gather(1, local).squeeze(1) > threshold[:, j])
                                ).long()
            if argmax:
                value, index = logits.max(dim=1)
                better = value > top
                top = torch.where(better, value, top)
                top_id = torch.where(better, index + start, top_id)
                tile_max = value
            else:
                tile_max = logits.amax(dim=1)
            new_max = torch.maximum(run_max, tile_max)
            exp_sum = logits.sub_(new_max.unsqueeze(1)).exp_().sum(1)
            run_sum = run_sum * torch.exp(run_max - new_max) + exp_sum
            run_max = new_max
        log_norm[r0:r1] = run_max + torch.log(run_sum)
        if argmax:
            best[r0:r1], pred[r0:r1] = top, top_id
    return _Scan(log_norm, own, larger, best, pred)


def _rank_and_prob(lm: LM, hidden: torch.Tensor, tokens: torch.Tensor):
    """Rank (strictly larger logits) and probability of ``tokens`` for each row of ``hidden``.

    Args:
        lm: the model.
        hidden: ``(rows, d)`` normed hidden states, float32.
        tokens: ``(rows, k)`` token ids to score per row.

    Returns:
        ``(rows, k)`` int64 ranks and float32 probabilities.
    """
    scan = _scan(lm, hidden, tokens)
    return scan.larger, torch.exp(scan.own - scan.log_norm.unsqueeze(1))


def _final_prediction(lm: LM, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy prediction and its probability from the last layer's normed hidden states.

    Streams the vocabulary (a running max and log-sum-exp), so the full logits never exist.
    Ties go to the lowest token id, as with ``argmax``.
    """
    empty = torch.empty(len(hidden), 0, dtype=torch.int64, device=hidden.device)
    scan = _scan(lm, hidden, empty, argmax=True)
    return scan.pred, torch.exp(scan.best - scan.log_norm)


def lens_stats(lm: LM, hidden: torch.Tensor, targets: torch.Tensor | None = None) -> LensStats:
    """Project per-layer hidden states of a batch and score the prediction and the target.

    Two passes over the vocabulary, each layer's rows read once: the last layer (argmax, its
    normaliser, the target's rank), then every earlier layer (ranks of prediction and target).

    Args:
        lm: the model.
        hidden: ``(n_layers, batch, d)`` block outputs at the prediction positions.
        targets: ``(batch,)`` target token ids, or None for plain prompts.
    """
    n_layers, batch, _ = hidden.shape
    normed = lm.arch.pre_unembed(hidden.to(lm.dtype)).float()
    has_target = targets is not None
    no_tokens = torch.empty(batch, 0, dtype=torch.int64, device=hidden.device)
    last = _scan(lm, normed[-1], targets.view(batch, 1) if has_target else no_tokens,
                 argmax=True)
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
        ranks, probs = _rank_and_prob(lm, normed[:-1].reshape(-1, normed.shape[-1]),
                                      tokens.repeat(n_layers - 1, 1))
        ranks = ranks.view(n_layers - 1, batch, -1)
        probs = probs.view(n_layers - 1, batch, -1)
        pred_rank[:-1], pred_prob[:-1] = ranks[..., 0], probs[..., 0]
        if has_target:
            target_rank[:-1], target_prob[:-1] = ranks[..., 1], probs[..., 1]
    return LensStats(
        pred_token=pred,
        pred_rank=pred_rank,
        pred_prob=pred_prob,
        target_rank=target_rank if has_target else None,
        target_prob=target_prob if has_target else None,
    )


def block_outputs(lm: LM, ids: list[list[int]], positions: list[int]) -> torch.Tensor:
    """Run the backbone on one batch; ``(n_layers, batch, d)`` block outputs at ``positions``."""
    longest = max(map(len, ids))
    pad = lm.tokenizer.pad_token_id or 0
    input_ids = torch.tensor([row + [pad] * (longest - len(row)) for row in ids],
                             device=lm.device)
    attention_mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids],
                                  device=lm.device)
    where = torch.tensor(positions, device=lm.device)
    kwargs = {} if lm.is_masked else {"use_cache": False}
    with capture_at_positions(lm.arch.blocks, where) as captured:
        lm.arch.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return torch.stack(captured)


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
    rows = [_logits(lm, lm.arch.pre_unembed(hidden[0, position : position + 1]).float(),
                    0, lm.vocab_size)[0] for hidden in out.hidden_states[1:-1]]
    rows.append(out.logits[0, position].float())
    return torch.stack(rows)


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def project(lm: LM, probes: pd.DataFrame | Sequence[str], *, batch_size: int | None = None,
            progress: bool | None = None) -> pd.DataFrame:
    """Layer-wise ranks and probabilities of the model's prediction (and of the target).

    Args:
        lm: a loaded model (:func:`memrecall.load` or :func:`memrecall.wrap`).
        probes: the output of :func:`memrecall.make_probes` (``prompt`` and ``target_token``
            columns), or plain prompts.
        batch_size: at most this many prompts per forward pass; by default as many as fit the
            device's activation budget. On out-of-memory the batch is halved and retried.
        progress: show a progress bar (default: when there are more than 64 prompts).

    Returns:
        One row per probe, same order: the probe columns plus ``pred_token``, and the per-layer
        numpy arrays (length ``n_layers``) ``pred_rank``, ``pred_prob``; with targets also
        ``is_memorized``, ``target_rank``, ``target_prob``.
    """
    frame = (probes.reset_index(drop=True).copy() if isinstance(probes, pd.DataFrame)
             else pd.DataFrame({"prompt": list(probes)}))
    if "prompt" not in frame.columns:
        raise ValueError("project needs a `prompt` column (use memrecall.make_probes)")
    prompts = frame["prompt"].astype(str).tolist()
    has_target = "target_token" in frame.columns
    targets = torch.tensor(frame["target_token"].to_numpy(dtype=np.int64)) if has_target else None

    ids, positions = model_inputs(lm, prompts)
    n = len(ids)
    n_layers = lm.n_layers
    out = {"pred_token": np.zeros(n, dtype=np.int64),
           "pred_rank": np.zeros((n, n_layers), dtype=np.int64),
           "pred_prob": np.zeros((n, n_layers), dtype=np.float32)}
    if has_target:
        out["target_rank"] = np.zeros((n, n_layers), dtype=np.int64)
        out["target_prob"] = np.zeros((n, n_layers), dtype=np.float32)

    max_tokens = activation_token_budget(lm)
    pending = plan_batches([len(r) for r in ids], max_tokens, batch_size,
                           batch_overhead_tokens(lm))
    show = progress if progress is not None else n > 64
    bar = progress_bar(total=n, desc=f"project {lm.name}", unit="prompt", disable=not show)
    with torch.inference_mode(), bar:
        while pending:
            rows = pending.pop(0)
            try:
                hidden = block_outputs(lm, [ids[i] for i in rows], [positions[i] for i in rows])
                stats = lens_stats(lm, hidden, None if targets is None
                                   else targets[rows].to(lm.device))
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_out_of_memory(error) or len(rows) == 1:
                    raise
                if lm.device.type == "cuda":
                    torch.cuda.empty_cache()
                half = len(rows) // 2
                pending[:0] = [rows[:half], rows[half:]]
                continue
            out["pred_token"][rows] = stats.pred_token.cpu().numpy()
            out["pred_rank"][rows] = stats.pred_rank.T.cpu().numpy()
            out["pred_prob"][rows] = stats.pred_prob.T.cpu().numpy()
            if has_target:
                out["target_rank"][rows] = stats.target_rank.T.cpu().numpy()
                out["target_prob"][rows] = stats.target_prob.T.cpu().numpy()
            bar.update(len(rows))

    frame["pred_token"] = out["pred_token"]
    if has_target:
        frame["is_memorized"] = frame["pred_token"].to_numpy() == frame["target_token"].to_numpy()
    for column in ("pred_rank", "pred_prob", "target_rank", "target_prob"):
        if column in out:
            frame[column] = list(out[column])
    return frame
