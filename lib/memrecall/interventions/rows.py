"""Rows of (configuration, probe) pairs: chunks of them, and the head scans they queue for.

Shared by the FFN knockout sweep (:mod:`.sweep`) and the attention-edge sweep
(:mod:`.attention_sweep`): rows run through the blocks in chunks (:func:`spans`, halved on
out-of-memory by :func:`halves`), and their final states wait in a :class:`HeadQueue` until
enough of them share one streaming pass over the vocabulary.
"""

from __future__ import annotations

import torch

from ..models import LM
from ..models.finite import check_finite

__all__ = ["HEAD_ROWS", "HeadQueue", "halves", "spans"]


class HeadQueue:
    """Final-head read-outs of many rows at once: rows wait until enough of them share a scan.

    One pass over the unembedding reads all of it whatever the number of rows, so a few rows at
    a time would be memory-bound; :data:`HEAD_ROWS` rows (or all, on an accelerator) are not.
    """

    def __init__(self, lm: LM, tokens: torch.Tensor, out: tuple[torch.Tensor, ...],
                 rows: int) -> None:
        self.lm, self.tokens, self.rows = lm, tokens, rows
        self.pred, self.rank, self.prob = out
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.count = 0

    def add(self, configs: torch.Tensor, probes: torch.Tensor, normed: torch.Tensor) -> None:
        """Queue ``(rows, d)`` normed states of rows (configuration, probe); scan when enough."""
        self.pending.append((configs, probes, normed))
        self.count += len(configs)
        if self.count >= self.rows:
            self.flush()

    def flush(self) -> None:
        """Scan every queued row: the new prediction, ranks and probabilities of the tokens."""
        if not self.pending:
            return
        configs, probes, normed = (torch.cat(parts) for parts in zip(*self.pending))
        self.pending, self.count = [], 0
        scan = self.lm.head.scan(normed, self.tokens[probes], argmax=True)
        check_finite(self.lm, scan.log_norm.unsqueeze(0), "logit",
                     layers=[self.lm.n_layers - 1], rows=probes, where=" after a knockout")
        self.pred[configs, probes] = scan.pred
        self.rank[configs, probes] = scan.larger
        self.prob[configs, probes] = torch.exp(scan.own - scan.log_norm.unsqueeze(1))


HEAD_ROWS = 4096
"""Rows per head scan on CPU (the scan's own row tile); all rows at once on an accelerator."""


def halves(span: tuple[int, int]) -> list[tuple[int, int]]:
    """A span of rows split in two (``[]`` when it holds one row: nothing left to halve)."""
    lo, hi = span
    if hi - lo < 2:
        return []
    mid = (lo + hi) // 2
    return [(lo, mid), (mid, hi)]


def spans(total: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` spans of at most ``size`` rows covering ``total`` rows in order."""
    return [(lo, min(lo + size, total)) for lo in range(0, total, size)]
