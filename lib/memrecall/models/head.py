"""The model's own read-out: final norm, then unembedding (for BERT the whole MLM head).

A :class:`Head` turns hidden states into logits, token logits, ranks and probabilities. Its
:meth:`Head.scan` streams the vocabulary in tiles (rows x vocabulary chunk, one reused buffer,
cache-sized on CPU) reduced in place: an online log-sum-exp, a count of strictly larger logits per
scored token (ranks without sorting) and a running argmax, so no ``(rows, vocab)`` tensor of a
whole batch of layers ever exists. Every loaded model carries one: ``lm.head``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # a leaf module: models.LM builds its head from the resolved architecture
    from .architectures import Architecture

__all__ = ["CPU_TILE_BYTES", "CPU_TILE_ROWS", "LOGIT_CHUNK_BYTES", "Head", "Scan"]

# Working memory for one tile of logits (rows x vocabulary chunk) on an accelerator.
LOGIT_CHUNK_BYTES = 256 * 2**20
# On CPU a tile is reduced while it is still in (last-level) cache: at most this many rows and
# bytes. Smaller tiles fit L2 but multiply the parallel regions, which a busy machine punishes.
CPU_TILE_ROWS = 4096
CPU_TILE_BYTES = 64 * 2**20
# A vocabulary chunk is at least this many ids wide, however many rows share a tile.
MIN_TILE_IDS = 1024


@dataclass
class Scan:
    """What one streaming pass over the vocabulary learns about each row (see :meth:`Head.scan`)."""

    log_norm: torch.Tensor  # (rows,) log of the softmax normaliser
    own: torch.Tensor  # (rows, k) logits of the scored tokens
    larger: torch.Tensor  # (rows, k) int64: logits strictly larger than ``own`` (= rank)
    best: torch.Tensor | None  # (rows,) largest logit (with ``argmax``)
    pred: torch.Tensor | None  # (rows,) its token id, lowest on ties (with ``argmax``)


class Head:
    """Final norm and unembedding of one model, with a tiled, streaming vocabulary scan.

    Args:
        arch: the resolved architecture (``lm.arch``).
        tile_rows: rows reduced together; default 4096 on CPU (a tile stays in cache), all rows
            on an accelerator.
        tile_bytes: bytes of one tile of logits; default 64 MiB on CPU, 256 MiB elsewhere.
        tile_ids: vocabulary ids per tile; default as many as fit ``tile_bytes`` (at least 1024).

    The tile sizes change speed and memory, never the numbers (the tests check it).
    """

    def __init__(self, arch: Architecture, *, tile_rows: int | None = None,
                 tile_bytes: int | None = None, tile_ids: int | None = None) -> None:
        self.arch = arch
        self.tile_rows = tile_rows
        self.tile_bytes = tile_bytes
        self.tile_ids = tile_ids

    def __repr__(self) -> str:
        return (f"Head({self.arch.model_type}, vocab {self.vocab_size}, tile_rows="
                f"{self.tile_rows}, tile_bytes={self.tile_bytes}, tile_ids={self.tile_ids})")

    @property
    def vocab_size(self) -> int:
        """Rows of the unembedding."""
        return self.arch.unembed_weight.shape[0]

    @property
    def device(self) -> torch.device:
        """Where the unembedding is."""
        return self.arch.unembed_weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The unembedding's dtype (the model's)."""
        return self.arch.unembed_weight.dtype

    def normalize(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm (BERT: the MLM transform): ``(..., d) -> (..., d)``, float32 out.

        Runs in the model's dtype, as the model does; the float32 result holds exactly the
        values the model's unembedding would read. ``hidden`` may be on any device (a block of a
        model split over several): the result is on the unembedding's device.
        """
        hidden = hidden.to(self.device, self.dtype)
        return self.arch.pre_unembed(hidden).to(self.device).float()

    def logits(self, normed: torch.Tensor, start: int = 0, stop: int | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of vocabulary slice ``[start, stop)``: ``(rows, d) -> (rows, stop - start)``.

        Computed as the model computes them, in its dtype (a bfloat16 model's logits are
        bfloat16, rounded as its own ``lm_head`` rounds them), and returned as float32, so ranks
        are counted on the model's own logits and every reduction runs in float32.
        ``out``, if given, is a contiguous ``(rows, stop - start)`` float32 buffer to write into.
        """
        stop = self.vocab_size if stop is None else stop
        weight = self.arch.unembed_weight[start:stop]
        bias = self._bias(slice(start, stop))
        if weight.dtype == torch.float32:
            logits = torch.mm(normed, weight.T, out=out) if out is not None else normed @ weight.T
            if bias is not None:
                logits += bias
            return self._softcap(logits)
        logits = self._softcap(torch.nn.functional.linear(normed.to(weight.dtype), weight, bias))
        return out.copy_(logits) if out is not None else logits.float()

    def token_logits(self, normed: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logit of one token per row: ``(rows, d), (rows,) -> (rows,)``, float32.

        A float32 dot product plus the bias, rounded once to the model's dtype, then soft-capped
        in it (as :meth:`logits`): the matching entry of :meth:`logits` up to the order of the
        float32 sums.
        """
        logits = (normed * self.arch.unembed_weight[tokens].float()).sum(-1)
        bias = self._bias(tokens)
        if bias is not None:
            logits += bias.float()
        return self._softcap(logits.to(self.dtype)).float()

    def _bias(self, index: slice | torch.Tensor) -> torch.Tensor | None:
        bias = self.arch.unembed_bias
        return None if bias is None else bias[index]

    def _softcap(self, logits: torch.Tensor) -> torch.Tensor:
        """Gemma-style soft-capping in place, in ``logits``' dtype (as the model does it)."""
        cap = self.arch.logit_softcap
        return logits.div_(cap).tanh_().mul_(cap) if cap else logits

    def logits_at(self, normed: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable logits of the tokens ``ids`` (all if None): ``(rows, d) -> (rows, k)``.

        Out of place (no reused buffer, no in-place soft-cap), so gradients flow to ``normed``.
        """
        arch = self.arch
        weight = arch.unembed_weight if ids is None else arch.unembed_weight[ids]
        logits = normed @ weight.to(normed.dtype).T
        if arch.unembed_bias is not None:
            bias = arch.unembed_bias if ids is None else arch.unembed_bias[ids]
            logits = logits + bias.to(logits.dtype)
        if arch.logit_softcap:
            logits = torch.tanh(logits / arch.logit_softcap) * arch.logit_softcap
        return logits

    @torch.no_grad()
    def scan(self, normed: torch.Tensor, tokens: torch.Tensor, argmax: bool = False) -> Scan:
        """One pass over the vocabulary: normaliser, ranks of ``tokens`` and optionally the argmax.

        The logits are computed tile by tile (rows x vocabulary chunk, into one reused buffer)
        and reduced in place: an online log-sum-exp, a count of strictly larger logits per
        scored token and a running maximum, so the full logits never exist and, on CPU, each
        tile is reduced while it is still in cache. No autograd (the buffers are reused).

        Args:
            normed: ``(rows, d)`` normed hidden states, float32.
            tokens: ``(rows, k)`` token ids to rank per row (``k`` may be 0).
            argmax: also find each row's largest logit and its token.
        """
        rows, k = tokens.shape
        device = normed.device
        log_norm = torch.empty(rows, device=device)
        own = torch.empty(rows, k, device=device)
        larger = torch.zeros(rows, k, dtype=torch.int64, device=device)
        best = torch.empty(rows, device=device) if argmax else None
        pred = torch.empty(rows, dtype=torch.int64, device=device) if argmax else None
        buffer = mask = None
        for r0, r1 in self._row_tiles(rows):
            h, tok = normed[r0:r1].contiguous(), tokens[r0:r1]
            n = r1 - r0
            if k:
                own[r0:r1] = self.token_logits(h.repeat_interleave(k, 0),
                                               tok.reshape(-1)).view(n, k)
            threshold = own[r0:r1]
            run_max = torch.full((n,), -torch.inf, device=device)
            run_sum = torch.zeros(n, device=device)
            count = larger[r0:r1]
            if argmax:
                top = torch.full((n,), -torch.inf, device=device)
                top_id = torch.zeros(n, dtype=torch.int64, device=device)
            for start, stop in self._vocab_tiles(n):
                width = stop - start
                if buffer is None or buffer.numel() < n * width:
                    buffer = torch.empty(n * width, device=device)
                    mask = torch.empty(n * width, device=device)
                logits = self.logits(h, start, stop, out=buffer[: n * width].view(n, width))
                hits = mask[: n * width].view(n, width)
                for j in range(k):
                    # float 0/1 and a float sum: faster than a bool mask and an integer sum
                    count[:, j] += torch.gt(logits, threshold[:, j : j + 1],
                                            out=hits).sum(1).long()
                    # The token itself must not count against itself, whatever the rounding.
                    inside = (tok[:, j] >= start) & (tok[:, j] < stop)
                    local = (tok[:, j] - start).clamp(0, width - 1).unsqueeze(1)
                    count[:, j] -= (inside & (logits.gather(1, local).squeeze(1)
                                              > threshold[:, j])).long()
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
        return Scan(log_norm, own, larger, best, pred)

    def rank_and_prob(self, normed: torch.Tensor,
                      tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank (strictly larger logits) and probability of ``tokens`` for each row.

        Args:
            normed: ``(rows, d)`` normed hidden states, float32.
            tokens: ``(rows, k)`` token ids to score per row.

        Returns:
            ``(rows, k)`` int64 ranks and float32 probabilities.
        """
        scan = self.scan(normed, tokens)
        return scan.larger, torch.exp(scan.own - scan.log_norm.unsqueeze(1))

    def predict(self, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy token and its probability per row: ``(rows, d) -> (rows,), (rows,)``.

        Streams the vocabulary, so the full logits never exist. Ties go to the lowest token id,
        as with ``argmax``.
        """
        empty = torch.empty(len(normed), 0, dtype=torch.int64, device=normed.device)
        scan = self.scan(normed, empty, argmax=True)
        return scan.pred, torch.exp(scan.best - scan.log_norm)

    # --- tiles ----------------------------------------------------------------------------

    def _tile_bytes(self) -> int:
        if self.tile_bytes is not None:
            return self.tile_bytes
        if self.device.type == "cpu":
            return min(LOGIT_CHUNK_BYTES, CPU_TILE_BYTES)
        return LOGIT_CHUNK_BYTES

    def _row_tiles(self, rows: int) -> Iterator[tuple[int, int]]:
        """Row ranges scanned together; on CPU small enough that a tile stays in cache."""
        size = self.tile_rows
        if size is None:
            size = CPU_TILE_ROWS if self.device.type == "cpu" else rows
        size = max(1, min(size, rows))
        for start in range(0, rows, size):
            yield start, min(start + size, rows)

    def _vocab_tiles(self, rows: int) -> Iterator[tuple[int, int]]:
        """Vocabulary ranges of one tile of logits for ``rows`` rows."""
        vocab = self.vocab_size
        size = self.tile_ids or max(MIN_TILE_IDS, self._tile_bytes() // (4 * max(rows, 1)))
        for start in range(0, vocab, size):
            yield start, min(start + size, vocab)
