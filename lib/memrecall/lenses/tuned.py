"""The tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions ... with the Tuned Lens").

For every layer but the last an affine translator ``h_l + h_l A_l^T + b_l``, initialised to zero
(so it starts as the logit lens), trained with Adam to minimise ``KL(final || lens)``: the KL
divergence from the model's own output distribution to the distribution the lens reads at layer
``l``, averaged over the positions of ordinary text (WikiText-2 ``valid.txt``).

Hyperparameters (defaults; Belrose et al. used SGD with Nesterov momentum, 250 steps of 2^18
tokens; a CPU budget is a few thousand tokens, so we take Adam, which needs no tuning of the
step size to the scale of each layer's residual stream):

* ``steps=250`` Adam steps of ``rows_per_step=256`` positions (epochs over the budget as needed),
  learning rate ``lr=3e-3`` with a cosine decay to 0, no weight decay (SmolLM2, 100-128 steps:
  3e-3 reached a lower held-out KL than 1e-3 or 1e-2);
* ``b_l`` is learnt in units of the layer's residual scale (root mean square of its block
  outputs), so one learning rate suits every layer;
* ``vocab_sample``: ``None`` computes the KL over the full vocabulary (exact; the default for a
  GPU). On a CPU the vocabulary is the expensive part (Gemma 3: 262k tokens), so a number ``k``
  restricts each step's KL to the union of every row's top ``top_k=32`` final tokens and ``k``
  tokens drawn uniformly at random (fresh each step, so no token escapes the penalty for long).
  The held-out evaluation (:func:`memrecall.lenses.held_out_kl`) is always over the full
  vocabulary; ``meta["train_kl_bits"]`` (first and last step) is over each step's vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..models import LM
from .affine import AffineLens, fit_meta, translate
from .evaluate import kl_from_logits
from .text import TextChunks, hidden_batches

__all__ = ["TRAINING_CACHE_BYTES", "TunedLens"]

# The training positions' block outputs are kept in memory (not recomputed each epoch) when they
# fit in this many bytes; otherwise each step reads the next batch from a fresh forward pass.
TRAINING_CACHE_BYTES = 2 * 2**30


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No gradients for the model's own weights inside the block (restored on exit)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _row_batches(lm: LM, chunks: TextChunks, rows: int, generator: torch.Generator,
                 batch_chunks: int | None, cache_bytes: int) -> Iterator[torch.Tensor]:
    """Endless ``(n_layers, rows, d)`` batches of training positions, shuffled when cached."""
    per_row = 4 * lm.n_layers * lm.arch.unembed_weight.shape[1]
    if chunks.n_tokens * per_row <= cache_bytes:
        pool = torch.cat(list(hidden_batches(lm, chunks, batch_chunks)), dim=1)
        n_batches = max(1, pool.shape[1] // rows)
        while True:
            order = torch.randperm(pool.shape[1], generator=generator).to(pool.device)
            for start in range(0, n_batches * rows, rows):
                yield pool[:, order[start:start + rows]]
    while True:
        for hidden in hidden_batches(lm, chunks, batch_chunks):
            for start in range(0, hidden.shape[1], rows):
                yield hidden[:, start:start + rows]


def _vocabulary(lm: LM, final: torch.Tensor, sample: int | None, top_k: int,
                generator: torch.Generator) -> torch.Tensor | None:
    """Token ids one step's KL runs over: all (``None``), or some.

    Some: every row's top ``top_k`` final tokens and ``sample`` tokens drawn at random.
    """
    vocab = lm.head.vocab_size
    if sample is None or sample + top_k >= vocab:
        return None
    top = lm.head.logits(final).topk(top_k, dim=1).indices.flatten()
    drawn = torch.randint(vocab, (sample,), generator=generator).to(top.device)
    return torch.cat([top, drawn]).unique()


class TunedLens(AffineLens):
    """Tuned lens (Belrose et al. 2023): ``h_l -> h_l + h_l A_l^T + b_l``.

    Trained to minimise ``KL(final || lens)``. Fit with :meth:`fit`; :meth:`identity` is the
    untrained start.
    """

    kind = "tuned_lens"
    label = "tuned lens"
    short = "tuned"
    color = "#56B4E9"  # Okabe-Ito sky blue
    linestyle = "-."

    @classmethod
    def identity(cls, lm: LM) -> TunedLens:
        """The untrained lens (all translators zero): reads exactly like the logit lens."""
        width = lm.arch.unembed_weight.shape[1]
        return cls(torch.zeros(lm.n_layers - 1, width, width, device=lm.device),
                   torch.zeros(lm.n_layers - 1, width, device=lm.device),
                   {"model": lm.name, "revision": lm.revision, "n_layers": lm.n_layers,
                    "d_model": width, "hyperparameters": {"steps": 0}})

    @classmethod
    def fit(cls, lm: LM, chunks: TextChunks, *, steps: int = 250, lr: float = 3e-3,
            rows_per_step: int = 256, vocab_sample: int | None = None, top_k: int = 32,
            seed: int = 0, batch_chunks: int | None = None,
            cache_bytes: int = TRAINING_CACHE_BYTES) -> TunedLens:
        """Train the translators on the block outputs of ``chunks`` (see the module docstring).

        Args:
            lm: the model (its weights are not changed, nor given gradients).
            chunks: ordinary text (:func:`memrecall.lenses.wikitext_chunks`, ``split="valid"``).
            steps: Adam steps.
            lr: peak learning rate (cosine decay to 0).
            rows_per_step: positions per step.
            vocab_sample: ``None`` for the exact KL over the full vocabulary; else the number
                of random tokens added to the rows' top tokens in each step's KL.
            top_k: final top tokens per row kept in a sampled vocabulary.
            seed: shuffling and vocabulary samples.
            batch_chunks: chunks per forward pass when reading ``chunks``.
            cache_bytes: keep the training block outputs in memory up to this size.
        """
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        width = lm.arch.unembed_weight.shape[1]
        # one (d, d) matrix and one offset per layer: a layer's backward touches only its own
        weights = [torch.zeros(width, width, device=lm.device, requires_grad=True)
                   for _ in range(lm.n_layers - 1)]
        biases = [torch.zeros(width, device=lm.device, requires_grad=True)
                  for _ in range(lm.n_layers - 1)]
        optimizer = torch.optim.Adam([*weights, *biases], lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))))
        batches = _row_batches(lm, chunks, rows_per_step, generator, batch_chunks, cache_bytes)
        head, scale, history = lm.head, None, []
        with _frozen(lm.model):
            for _ in range(steps):
                hidden = next(batches)
                if scale is None:  # each layer's residual scale, from the first batch
                    scale = hidden[:-1].pow(2).mean(dim=(1, 2)).sqrt().clamp_min(1e-6)
                with torch.no_grad():
                    final = head.normalize(hidden[-1])
                    ids = _vocabulary(lm, final, vocab_sample, top_k, generator)
                    log_target = torch.log_softmax(head.logits_at(final, ids), dim=-1)
                    target = log_target.exp()
                    entropy = -torch.linalg.vecdot(target, log_target)
                optimizer.zero_grad()
                total = 0.0
                for layer in range(lm.n_layers - 1):  # one layer's logits in memory at a time
                    moved = translate(hidden[layer:layer + 1], weights[layer].unsqueeze(0),
                                      scale[layer] * biases[layer].unsqueeze(0))[0]
                    logits = head.logits_at(head.normalize(moved), ids)
                    kl = kl_from_logits(target, entropy, logits).mean()
                    kl.backward()
                    total += kl.item()
                optimizer.step()
                schedule.step()
                history.append(total / max(lm.n_layers - 1, 1) / math.log(2))
        weight = torch.stack([w.detach() for w in weights])
        bias = torch.stack([b.detach() for b in biases])
        effective_bias = scale[:, None] * bias if scale is not None else bias
        hyper = {"steps": steps, "lr": lr, "schedule": "cosine", "optimizer": "adam",
                 "rows_per_step": rows_per_step, "vocab_sample": vocab_sample, "top_k": top_k}
        meta = fit_meta(lm, chunks, hyper, seed=seed, seconds=time.perf_counter() - started)
        if history:
            meta["train_kl_bits"] = {"first": round(history[0], 4), "last": round(history[-1], 4)}
        return cls(weight.detach(), effective_bias, meta)
