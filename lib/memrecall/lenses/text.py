"""The text lenses are fitted and evaluated on, and the block outputs at every position of it.

Ordinary text, never the probes: fixed-length chunks of WikiText-2 (``valid.txt`` to fit,
``test.txt`` to evaluate), each read with the special tokens the tokenizer adds to a prompt (so
a chunk looks to the model like a long probe). Every position of a chunk is used except the
first (BOS, or a first token without context: never a prediction position of a probe); a masked
LM reads chunks with a seeded 15% of their tokens masked and is scored at the masks, where it
predicts, as in the probes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import data
from ..forward.batching import (
    activation_token_budget,
    backbone_kwargs,
    halves,
    iter_halving,
)
from ..forward.hooks import capture_where
from ..models import LM

__all__ = ["MASK_RATE", "TextChunks", "hidden_batches", "text_chunks", "wikitext_chunks"]

MASK_RATE = 0.15  # share of a chunk's tokens a masked LM reads masked (as BERT was trained)
# Captured block outputs of one batch (n_layers x scored positions x d, float32) stay under this.
CAPTURE_BYTES = 256 * 2**20
WIKITEXT_KEYS = {"valid": "wikitext2_valid", "test": "wikitext2_test"}


@dataclass(frozen=True)
class TextChunks:
    """Token chunks and the positions whose block outputs a lens is fitted or scored on.

    Attributes:
        ids: ``(chunks, length)`` int64 token ids, special tokens included.
        scored: ``(chunks, length)`` bool, the positions used.
        source: where the text comes from (e.g. ``wikitext-2/valid.txt``).
        sha256: checksum of that source.
        seed: the seed that chose the chunks (and, for a masked LM, the masks).
    """

    ids: torch.Tensor
    scored: torch.Tensor
    source: str
    sha256: str
    seed: int

    @property
    def n_tokens(self) -> int:
        """Positions used (the token budget)."""
        return int(self.scored.sum())

    def split(self, n_held: int) -> tuple[TextChunks, TextChunks]:
        """``(fit, held)``: the last chunks holding at least ``n_held`` positions are held out.

        The chunks are in stream order, so the held-out part is the end of the text, apart from
        what the fit reads (used to monitor the tuned lens's training, :mod:`.tuned`).

        Raises:
            ValueError: ``n_held`` is not positive or would leave nothing to fit on.
        """
        from_end = self.scored.sum(1).flip(0).cumsum(0)
        n_chunks = int((from_end < n_held).sum()) + 1
        if n_held < 1 or n_chunks >= len(self.ids):
            raise ValueError(f"cannot hold out {n_held} of {self.n_tokens} positions "
                             f"({len(self.ids)} chunks) and still fit on the rest")
        parts = (slice(None, -n_chunks), slice(-n_chunks, None))
        return tuple(TextChunks(ids=self.ids[part], scored=self.scored[part], source=self.source,
                                sha256=self.sha256, seed=self.seed) for part in parts)

    def provenance(self) -> dict[str, str | int]:
        """What identifies this text, for a lens's metadata and the cache key."""
        return {"source": self.source, "sha256": self.sha256, "n_tokens": self.n_tokens,
                "n_chunks": int(self.ids.shape[0]), "chunk_len": int(self.ids.shape[1]),
                "seed": self.seed}


def _special_affixes(lm: LM) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (BOS; BERT's CLS, SEP)."""
    tokenizer = lm.tokenizer
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    raise ValueError(f"{lm.name}: cannot find the text among the special tokens of {full}")


def text_chunks(lm: LM, texts: Sequence[str], n_tokens: int, chunk_len: int = 32,
                seed: int = 0, source: str = "texts", sha256: str = "") -> TextChunks:
    """Cut ``texts`` (tokenized one after another) into chunks and pick ``n_tokens`` positions.

    Chunks are consecutive, non-overlapping windows of the token stream, chosen at random
    (seeded) and kept in stream order, just enough of them for ``n_tokens`` positions (a masked
    LM reads a window again, with other masks, when the text is short of masks).

    Args:
        lm: the model whose tokenizer cuts the text.
        texts: paragraphs, read in order, each followed by a newline.
        n_tokens: positions to use in all (the budget).
        chunk_len: tokens per chunk, special tokens included (probes are shorter than 32).
        seed: chooses the chunks (and the masked positions of a masked LM).
        source: where ``texts`` come from (provenance).
        sha256: checksum of that source.

    Raises:
        ValueError: the text is too short for the budget, or ``chunk_len`` too small.
    """
    prefix, suffix = _special_affixes(lm)
    width = chunk_len - len(prefix) - len(suffix)
    if width < 2:
        raise ValueError(f"chunk_len={chunk_len} leaves {width} text tokens; use at least "
                         f"{len(prefix) + len(suffix) + 2}")
    encoded = lm.tokenizer([t + "\n" for t in texts], add_special_tokens=False)["input_ids"]
    stream = torch.tensor([i for row in encoded for i in row], dtype=torch.int64)
    windows = stream[: len(stream) // width * width].view(-1, width)
    generator = torch.Generator().manual_seed(seed)
    first = len(prefix) if prefix else 1  # never the first position of a sequence
    per_chunk = max(1, round(MASK_RATE * width)) if lm.is_masked else width - (first - len(prefix))
    n_chunks = math.ceil(n_tokens / per_chunk)
    # a masked LM may read a window several times, with other masks each time
    reads = max(1, math.ceil(n_chunks / max(len(windows), 1))) if lm.is_masked else 1
    if n_tokens < 1 or n_chunks > len(windows) * reads:
        raise ValueError(f"{source}: {len(windows)} chunks of {width} tokens hold at most "
                         f"{len(windows) * per_chunk} positions; asked for {n_tokens}")
    chosen = torch.cat([torch.randperm(len(windows), generator=generator)
                        for _ in range(reads)])[:n_chunks].sort().values
    body = windows[chosen]
    ids = torch.cat([torch.tensor(prefix, dtype=torch.int64).expand(n_chunks, -1), body,
                     torch.tensor(suffix, dtype=torch.int64).expand(n_chunks, -1)], dim=1)
    scored = torch.zeros_like(ids, dtype=torch.bool)
    if lm.is_masked:
        picks = torch.rand(n_chunks, width, generator=generator).argsort(dim=1)[:, :per_chunk]
        scored[torch.arange(n_chunks).unsqueeze(1), picks + len(prefix)] = True
        ids[scored] = lm.tokenizer.mask_token_id
    else:
        scored[:, first:len(prefix) + width] = True
    # the last chunk gives only what the budget still needs (its first positions)
    surplus = n_chunks * per_chunk - n_tokens
    if surplus:
        last = scored[-1].nonzero().squeeze(1)
        scored[-1, last[len(last) - surplus:]] = False
    return TextChunks(ids=ids, scored=scored, source=source, sha256=sha256, seed=seed)


def wikitext_chunks(lm: LM, split: str = "valid", n_tokens: int = 4096, chunk_len: int = 32,
                    seed: int = 0, path: str | Path | None = None) -> TextChunks:
    """Chunks of WikiText-2 (``valid`` to fit a lens, ``test`` to evaluate it).

    The file is found like every data file (:func:`memrecall.data.resolve_data_file`); its
    paragraphs (headings and blank lines dropped) are detokenized (``" @-@ "`` -> ``"-"``...)
    and cut by :func:`text_chunks`.
    """
    if split not in WIKITEXT_KEYS:
        raise ValueError(f"split must be one of {sorted(WIKITEXT_KEYS)}, got {split!r}")
    file = data.resolve_data_file(WIKITEXT_KEYS[split], path)
    lines = file.read_text(encoding="utf-8").split("\n")
    paragraphs = [data.detokenize(line) for line in lines
                  if line.strip() and not line.strip().startswith("=")]
    return text_chunks(lm, paragraphs, n_tokens, chunk_len, seed,
                       source=f"wikitext-2/{file.name}", sha256=data.sha256_file(file))


def hidden_batches(lm: LM, chunks: TextChunks,
                   batch_chunks: int | None = None) -> Iterator[torch.Tensor]:
    """Block outputs at the scored positions, batch by batch, float32, without gradients.

    Args:
        lm: the model.
        chunks: the text (:func:`wikitext_chunks`).
        batch_chunks: chunks per forward pass; default as many as the activation budget and
            :data:`CAPTURE_BYTES` allow. On out-of-memory a batch is halved and retried
            (:func:`~memrecall.forward.batching.iter_halving`): its halves are yielded in turn.

    Yields:
        ``(n_layers, rows, d)`` tensors, ``rows`` the scored positions of one batch (in order).
    """
    if batch_chunks is None:
        length = chunks.ids.shape[1]
        per_chunk = 4 * lm.n_layers * lm.arch.unembed_weight.shape[1] * length
        batch_chunks = max(1, min(activation_token_budget(lm) // length,
                                  CAPTURE_BYTES // per_chunk))
    n = len(chunks.ids)
    batches = [np.arange(start, min(start + batch_chunks, n))
               for start in range(0, n, batch_chunks)]

    def run(rows: np.ndarray) -> torch.Tensor | None:
        span = slice(int(rows[0]), int(rows[-1]) + 1)  # consecutive chunks
        ids = chunks.ids[span].to(lm.device)
        scored = chunks.scored[span].to(lm.device)
        if not scored.any():
            return None
        with torch.no_grad(), capture_where(lm.arch.blocks, scored) as captured:
            lm.arch.backbone(input_ids=ids, attention_mask=torch.ones_like(ids),
                               **backbone_kwargs(lm))
        return torch.stack(captured).float()

    for _rows, hidden in iter_halving(batches, run, halves, lm.device):
        if hidden is not None:
            yield hidden
