"""How well a lens reads each layer: the held-out KL divergence to the model's own output.

For every position of held-out text (WikiText-2 ``test.txt``) and every layer ``l``,
``KL(final || lens_l)`` in bits over the full vocabulary: how many bits the distribution a lens
reads at layer ``l`` loses against the one the model finally outputs (the measure of tuned-lens's
own plots). It is 0 at the last layer under every lens, by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch

from ..models import LM
from .base import Lens
from .text import TextChunks, hidden_batches

__all__ = ["KL_COLUMNS", "LOGIT_TILE_FLOATS", "held_out_kl", "kl_from_logits"]

KL_COLUMNS = ["lens", "layer", "kl_bits", "se_bits", "n_tokens"]
# Rows of full-vocabulary logits held at once: about this many floats per tile (64 MiB).
LOGIT_TILE_FLOATS = 16 * 2**20


def kl_from_logits(target: torch.Tensor, entropy: torch.Tensor,
                   logits: torch.Tensor) -> torch.Tensor:
    """``KL(target || softmax(logits))`` per row, in nats (differentiable in ``logits``).

    Args:
        target: ``(rows, vocab)`` probabilities.
        entropy: ``(rows,)`` their entropy, in nats.
        logits: ``(rows, vocab)``.
    """
    return torch.logsumexp(logits, dim=-1) - torch.linalg.vecdot(target, logits) - entropy


@torch.no_grad()
def held_out_kl(lm: LM, chunks: TextChunks, lenses: Mapping[str, Lens],
                batch_chunks: int | None = None) -> pd.DataFrame:
    """Mean ``KL(final || lens)`` per layer, in bits, for each lens, on ``chunks``.

    Args:
        lm: the model.
        chunks: held-out text (:func:`memrecall.lenses.wikitext_chunks`, ``split="test"``).
        lenses: name -> lens (each checked against ``lm``).
        batch_chunks: chunks per forward pass.

    Returns:
        One row per (lens, layer): ``lens``, ``layer`` (0-based), ``kl_bits`` (mean over
        positions), ``se_bits`` (its standard error), ``n_tokens``.
    """
    for lens in lenses.values():
        lens.check(lm)
    head = lm.head
    shape = (len(lenses), lm.n_layers)
    total = torch.zeros(shape, dtype=torch.float64)
    squares = torch.zeros(shape, dtype=torch.float64)
    count = 0
    tile = max(1, LOGIT_TILE_FLOATS // head.vocab_size)
    for hidden in hidden_batches(lm, chunks, batch_chunks):
        normed = [head.normalize(lens.transform(hidden)) for lens in lenses.values()]
        for r0 in range(0, hidden.shape[1], tile):
            log_final = torch.log_softmax(head.logits(normed[0][-1, r0:r0 + tile]), dim=-1)
            final = log_final.exp()
            entropy = -torch.linalg.vecdot(final, log_final)
            del log_final
            for i, states in enumerate(normed):
                for layer in range(lm.n_layers):
                    logits = head.logits(states[layer, r0:r0 + tile])
                    kl = kl_from_logits(final, entropy, logits).clamp_min(0).double() / math.log(2)
                    total[i, layer] += kl.sum().cpu()
                    squares[i, layer] += kl.pow(2).sum().cpu()
        count += hidden.shape[1]
    mean = total / count
    se = ((squares / count - mean.pow(2)).clamp_min(0) / max(count - 1, 1)).sqrt()
    rows = [{"lens": name, "layer": layer, "kl_bits": float(mean[i, layer]),
             "se_bits": float(se[i, layer]), "n_tokens": count}
            for i, name in enumerate(lenses) for layer in range(lm.n_layers)]
    return pd.DataFrame(rows, columns=KL_COLUMNS)
