"""Rows of (configuration, probe) pairs: one pass over the blocks, and the head scans they await.

Shared by the FFN knockout sweep (:mod:`.sweep`) and the attention-edge sweep
(:mod:`.attention_sweep`): :func:`staggered_rows` runs every row of a probe batch through the
blocks in chunks (:func:`spans`, halved on out-of-memory by :func:`halves`), each joining at its
window's first block, and their final states wait in a :class:`HeadQueue` until enough of them
share one streaming pass over the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..forward.batching import halve_on_oom
from ..models import LM
from ..models.finite import check_finite
from .resume import CleanRun

__all__ = ["HEAD_ROWS", "HeadQueue", "RunBlock", "halves", "spans", "staggered_rows"]

RunBlock = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(layer, configs, probes, hidden) -> hidden``: one block for a chunk of rows, under the rows'
interventions (``probes`` index the batch)."""


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


def staggered_rows(lm: LM, clean: CleanRun, starts: torch.Tensor, max_rows: int,
                   head: HeadQueue, run_block: RunBlock,
                   keep: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                   ) -> int:
    """Every (configuration, probe) row of one probe batch, in one pass over the blocks.

    A row joins at its configuration's first block (``starts``, 0-based), on its probe's
    recorded input there; at each block the rows in flight run in chunks of at most
    ``max_rows`` through ``run_block``; at the end each row's prediction position goes to
    ``head``.

    Args:
        lm: the model.
        clean: the batch's recorded clean run.
        starts: ``(n_configs,)`` the first block of each configuration.
        max_rows: rows per forward (halved on out-of-memory).
        head: where the final states are read out.
        run_block: one block for a chunk of rows (see :data:`RunBlock`).
        keep: ``(configs, probes) -> bool mask`` of the joining rows to run (default all);
            rows left out are never run.

    Returns:
        The number of rows run.
    """
    batch = clean.batch
    size, device = len(batch.rows), batch.rows.device
    configs = probes = torch.empty(0, dtype=torch.long, device=device)
    hidden = None
    for layer in range(lm.n_layers):
        joining = torch.nonzero(starts == layer).squeeze(1)
        new_configs = joining.repeat_interleave(size)
        new_probes = torch.arange(size, device=device).repeat(len(joining))
        if keep is not None:
            kept = keep(new_configs, new_probes)
            new_configs, new_probes = new_configs[kept], new_probes[kept]
        if len(new_configs):
            configs = torch.cat([configs, new_configs])
            probes = torch.cat([probes, new_probes])
            entering = clean.block_input(layer, new_probes)
            hidden = entering if hidden is None else torch.cat([hidden, entering])
        if hidden is None:
            continue

        def step(span: tuple[int, int], layer: int = layer, configs: torch.Tensor = configs,
                 probes: torch.Tensor = probes, hidden: torch.Tensor = hidden) -> torch.Tensor:
            part = slice(*span)
            return run_block(layer, configs[part], probes[part], hidden[part])

        done = halve_on_oom(spans(len(configs), max_rows), step, halves, lm.device)
        hidden = torch.cat([out for _, out in done])
    for lo, hi in spans(len(configs), max_rows):
        head.add(configs[lo:hi], batch.rows[probes[lo:hi]],
                 clean.readout(hidden[lo:hi], probes[lo:hi]))
    return len(configs)
