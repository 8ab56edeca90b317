"""Layer-wise projection ("logit lens"): every block's output read through the model's own head.

Entry ``i`` of every per-layer array is the hidden state after block ``i`` at the prediction
position, passed through the final norm (BERT: the whole MLM head) and the unembedding, so entry
``n_layers - 1`` is exactly the model's output distribution.

How it stays fast and bounded (see ``make bench``):

* prompts are sorted by length and batched under a token budget, so padding costs little;
* only the backbone runs (no LM head over every position); hooks keep one vector per block
  per prompt, so activations of other positions are freed as the forward goes;
* ranks are counted (number of strictly larger logits), never sorted, and the vocabulary is
  streamed in chunks so no (layers x prompts x vocab) tensor ever exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .hooks import capture_at_positions
from .models import LM

LENS_COLUMNS = ["pred_token", "is_memorized", "pred_rank", "pred_prob", "target_rank",
                "target_prob"]

# Working memory for one vocabulary chunk of logits, and for a batch's activations.
LOGIT_CHUNK_BYTES = 256 * 2**20
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


def plan_batches(lengths: Sequence[int], max_tokens: int,
                 max_rows: int | None = None) -> list[np.ndarray]:
    """Group row indices, longest first, so that ``rows x longest`` stays under ``max_tokens``.

    Sorting by length first makes each batch's rows nearly equal in length: little padding.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, current, longest = [], [], 0
    for index in order:
        longest = max(longest, lengths[index]) if current else lengths[index]
        too_many = max_rows is not None and len(current) >= max_rows
        if current and (too_many or (len(current) + 1) * longest > max_tokens):
            batches.append(np.array(current))
            current, longest = [], lengths[index]
        current.append(index)
    if current:
        batches.append(np.array(current))
    return batches


def activation_token_budget(lm: LM) -> int:
    """Padded tokens per batch that fit the activation memory budget of ``lm``'s device."""
    config = lm.model.config.get_text_config()
    hidden = lm.arch.unembed_weight.shape[1]
    ffn = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) \
        or 4 * hidden
    bytes_per_token = 4 * (8 * hidden + 3 * ffn)  # residual stream copies, attention, MLP
    budget = ACTIVATION_BYTES.get(lm.device.type, ACTIVATION_BYTES["cpu"])
    return max(64, budget // bytes_per_token)


def _logits(lm: LM, hidden: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Logits of vocabulary slice ``[start, stop)``: ``(rows, d) -> (rows, stop - start)``."""
    arch = lm.arch
    logits = hidden @ arch.unembed_weight[start:stop].float().T
    if arch.unembed_bias is not None:
        logits += arch.unembed_bias[start:stop].float()
    if arch.logit_softcap:
        logits = torch.tanh(logits / arch.logit_softcap) * arch.logit_softcap
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


def _chunks(lm: LM, rows: int) -> Iterator[tuple[int, int]]:
    vocab = lm.vocab_size
    size = max(1024, LOGIT_CHUNK_BYTES // (4 * max(rows, 1)))
    for start in range(0, vocab, size):
        yield start, min(start + size, vocab)


def _rank_and_prob(lm: LM, hidden: torch.Tensor, tokens: torch.Tensor):
    """Rank (strictly larger logits) and probability of ``tokens`` for each row of ``hidden``.

    Args:
        hidden: ``(rows, d)`` normed hidden states, float32.
        tokens: ``(rows, k)`` token ids to score per row.

    Returns:
        ``(rows, k)`` int64 ranks and float32 probabilities.
    """
    rows, k = tokens.shape
    own = _token_logits(lm, hidden.repeat_interleave(k, 0), tokens.reshape(-1)).view(rows, k)
    larger = torch.zeros(rows, k, dtype=torch.int64, device=hidden.device)
    log_norm = torch.full((rows,), -torch.inf, device=hidden.device)
    for start, stop in _chunks(lm, rows):
        logits = _logits(lm, hidden, start, stop)
        log_norm = torch.logaddexp(log_norm, torch.logsumexp(logits, dim=1))
        for j in range(k):
            threshold = own[:, j : j + 1]
            larger[:, j] += (logits > threshold).sum(1)
            # The token itself must not count against itself, whatever the matmul rounding.
            inside = (tokens[:, j] >= start) & (tokens[:, j] < stop)
            local = (tokens[:, j] - start).clamp(0, stop - start - 1).unsqueeze(1)
            larger[:, j] -= (inside & (logits.gather(1, local) > threshold).squeeze(1)).long()
    return larger, torch.exp(own - log_norm.unsqueeze(1))


def _final_prediction(lm: LM, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy prediction and its probability from the last layer's normed hidden states.

    Streams the vocabulary (a running max and log-sum-exp), so the full logits never exist.
    Ties go to the lowest token id, as with ``argmax``.
    """
    rows = len(hidden)
    best = torch.full((rows,), -torch.inf, device=hidden.device)
    pred = torch.zeros(rows, dtype=torch.int64, device=hidden.device)
    log_norm = torch.full((rows,), -torch.inf, device=hidden.device)
    for start, stop in _chunks(lm, rows):
        logits = _logits(lm, hidden, start, stop)
        value, index = logits.max(dim=1)
        better = value > best
        best = torch.where(better, value, best)
        pred = torch.where(better, index + start, pred)
        log_norm = torch.logaddexp(log_norm, torch.logsumexp(logits, dim=1))
    return pred, torch.exp(best - log_norm)


def lens_stats(lm: LM, hidden: torch.Tensor, targets: torch.Tensor | None = None) -> LensStats:
    """Project per-layer hidden states of a batch and score the prediction and the target.

    Args:
        hidden: ``(n_layers, batch, d)`` block outputs at the prediction positions.
        targets: ``(batch,)`` target token ids, or None for plain prompts.
    """
    n_layers, batch, _ = hidden.shape
    normed = lm.arch.pre_unembed(hidden.to(lm.dtype)).float()
    pred, pred_prob = _final_prediction(lm, normed[-1])
    tokens = pred if targets is None else torch.stack([pred, targets], 1)
    tokens = tokens.view(batch, -1).repeat(n_layers, 1)
    ranks, probs = _rank_and_prob(lm, normed.reshape(-1, normed.shape[-1]), tokens)
    ranks, probs = ranks.view(n_layers, batch, -1), probs.view(n_layers, batch, -1)
    # At the last layer the prediction is the argmax by definition: take rank and probability
    # from the pass that chose it rather than from a recomputed, differently rounded logit.
    ranks[-1, :, 0] = 0
    probs[-1, :, 0] = pred_prob
    has_target = targets is not None
    return LensStats(
        pred_token=pred,
        pred_rank=ranks[..., 0],
        pred_prob=probs[..., 0],
        target_rank=ranks[..., 1] if has_target else None,
        target_prob=probs[..., 1] if has_target else None,
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
    pending = plan_batches([len(r) for r in ids], max_tokens, batch_size)
    show = progress if progress is not None else n > 64
    with torch.inference_mode(), tqdm(total=n, desc=f"project {lm.name}", unit="prompt",
                                      disable=not show) as bar:
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
