"""The tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions ... with the Tuned Lens").

For every layer but the last an affine translator ``h_l + h_l A_l^T + b_l`` trained with Adam to
minimise ``KL(final || lens)``: the KL divergence from the model's own output distribution to
the distribution the lens reads at layer ``l``, averaged over the positions of ordinary text
(WikiText-2 ``valid.txt``).

* **Start.** From a given lens's translators (``init``; notebook 06 passes the linear shortcut,
  whose closed form already maps each layer to the last layer's block output, what the
  unembedding reads), else from zero (the logit lens). Training then only has to close the gap
  between "the right hidden state" and "the right distribution".
* **Objective.** ``vocab_sample=None``: the exact KL over the full vocabulary (the default; a
  GPU's choice). A number ``k``: an importance-weighted estimate, cheap on a CPU where the
  vocabulary is the expensive part (Gemma 3: 262k tokens). Each step's vocabulary is the union
  of every row's ``top_k`` final tokens (kept exactly) and ``k`` tokens drawn uniformly, without
  replacement, from the rest, each standing for ``(vocab - top) / k`` tokens, so the lens's
  normaliser and the cross-entropy term are estimated without bias, unlike a plain subset, which
  ignores the mass the lens puts on the undrawn tokens (the log of the normaliser is then low by
  Jensen's inequality, by about half its relative variance). The target's own normaliser and
  entropy are always exact.
* **Monitor.** With ``monitor`` (text held out of the fit, :meth:`TextChunks.split`), the
  exact per-layer KL on it is measured at the start and every ``monitor_every`` steps, and each
  layer keeps the translator of its lowest monitored KL (the layers' translators are
  independent problems: the loss is a sum over layers). The start is a checkpoint too, so
  training never returns a layer worse, on the monitor, than the lens it started from.
* ``b_l`` is learnt in units of the layer's residual scale (root mean square of its block
  outputs), so one learning rate suits every layer; Adam's rate decays to 0 on a cosine.

``meta["train_kl_bits"]`` is the training objective per step (mean over layers, bits),
``meta["mean_vocab_per_step"]`` the tokens its logits covered;
``meta["monitor"]`` the held-out curve: checkpoint steps, mean and per-layer exact KL, and the
step each layer's translator was kept from.
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
from .evaluate import LOGIT_TILE_FLOATS, kl_from_logits
from .text import TextChunks, hidden_batches

__all__ = ["TRAINING_CACHE_BYTES", "TunedLens", "sampled_vocabulary"]

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


def sampled_vocabulary(log_final: torch.Tensor, sample: int | None, top_k: int,
                       generator: torch.Generator) -> tuple[torch.Tensor | None,
                                                             torch.Tensor | None]:
    """One step's vocabulary and the log importance weight of each of its tokens.

    Args:
        log_final: ``(rows, vocab)`` the model's output log-probabilities.
        sample: tokens drawn from outside the rows' top tokens; ``None`` for all of them.
        top_k: each row's most probable tokens, kept with weight 1.
        generator: draws the sample.

    Returns:
        ``(ids, log_weights)``, or ``(None, None)`` for the full vocabulary (also when the
        sample would cover it). A drawn token's weight is ``(vocab - kept) / sample``: it stands
        for that many tokens of the rest, so weighted sums over ``ids`` estimate sums over the
        whole vocabulary without bias.
    """
    vocab = log_final.shape[1]
    kept = log_final.topk(min(top_k, vocab), dim=1).indices.flatten().unique()
    rest = vocab - len(kept)
    if sample is None or sample >= rest:
        return None, None
    outside = torch.ones(vocab, dtype=torch.bool)
    outside[kept.cpu()] = False
    candidates = outside.nonzero().squeeze(1)
    drawn = candidates[torch.randperm(rest, generator=generator)[:sample]].to(kept.device)
    log_weights = torch.cat([torch.zeros(len(kept)),
                             torch.full((sample,), math.log(rest / sample))]).to(kept.device)
    return torch.cat([kept, drawn]), log_weights


def _kl(log_final: torch.Tensor, entropy: torch.Tensor, logits: torch.Tensor,
        ids: torch.Tensor | None, log_weights: torch.Tensor | None) -> torch.Tensor:
    """``KL(final || softmax(logits))`` per row in nats, exact or importance-weighted.

    ``logits`` are the lens's over ``ids`` (all tokens when ``ids`` is None); differentiable in
    ``logits``.
    """
    if ids is None:
        return kl_from_logits(log_final.exp(), entropy, logits)
    weighted_target = (log_final[:, ids] + log_weights).exp()
    return (torch.logsumexp(logits + log_weights, -1)
            - torch.linalg.vecdot(weighted_target, logits) - entropy)


def _target(lm: LM, final_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's output log-probabilities and their entropy (nats), exact, no gradients."""
    with torch.no_grad():
        head = lm.head
        log_final = torch.log_softmax(head.logits_at(head.normalize(final_hidden)), dim=-1)
        entropy = -torch.linalg.vecdot(log_final.exp(), log_final)
    return log_final, entropy


class _Monitor:
    """Exact per-layer held-out KL of a set of translators, on text kept out of the fit."""

    def __init__(self, lm: LM, chunks: TextChunks, batch_chunks: int | None) -> None:
        self.lm = lm
        self.hidden = torch.cat(list(hidden_batches(lm, chunks, batch_chunks)), dim=1)
        self.n_tokens = self.hidden.shape[1]
        self.source = chunks.source

    @torch.no_grad()
    def kl_bits(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> list[float]:
        """Mean exact KL in bits per layer (all but the last) of translators ``A_l``, ``b_l``."""
        head, hidden = self.lm.head, self.hidden
        tile = max(1, LOGIT_TILE_FLOATS // head.vocab_size)
        totals = torch.zeros(len(weights), dtype=torch.float64)
        for r0 in range(0, self.n_tokens, tile):
            log_final, entropy = _target(self.lm, hidden[-1, r0:r0 + tile])
            for layer, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
                moved = translate(hidden[layer:layer + 1, r0:r0 + tile], weight.unsqueeze(0),
                                  bias.unsqueeze(0))[0]
                logits = head.logits_at(head.normalize(moved))
                kl = _kl(log_final, entropy, logits, None, None).clamp_min(0)
                totals[layer] += kl.double().sum()
        return (totals / self.n_tokens / math.log(2)).tolist()


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
    def fit(cls, lm: LM, chunks: TextChunks, *, init: AffineLens | None = None,
            steps: int = 250, lr: float = 3e-3, rows_per_step: int = 256,
            vocab_sample: int | None = None, top_k: int = 32,
            monitor: TextChunks | None = None, monitor_every: int = 0, seed: int = 0,
            batch_chunks: int | None = None,
            cache_bytes: int = TRAINING_CACHE_BYTES) -> TunedLens:
        """Train the translators on the block outputs of ``chunks`` (see the module docstring).

        Args:
            lm: the model (its weights are not changed, nor given gradients).
            chunks: ordinary text (:func:`memrecall.lenses.wikitext_chunks`, ``split="valid"``).
            init: the lens to start from (checked against ``lm``); ``None`` for the logit lens.
            steps: Adam steps.
            lr: peak learning rate (cosine decay to 0).
            rows_per_step: positions per step.
            vocab_sample: ``None`` for the exact KL over the full vocabulary; else the number
                of tokens drawn, besides the rows' top tokens, for the importance-weighted KL.
            top_k: final top tokens per row kept exactly in a sampled vocabulary.
            monitor: held-out text whose exact KL picks each layer's best checkpoint.
            monitor_every: steps between checkpoints (0: only the start and the end).
            seed: shuffling and vocabulary samples.
            batch_chunks: chunks per forward pass when reading ``chunks``.
            cache_bytes: keep the training block outputs in memory up to this size.
        """
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        start = init if init is not None else cls.identity(lm)
        start.check(lm)
        batches = _row_batches(lm, chunks, rows_per_step, generator, batch_chunks, cache_bytes)
        first = next(batches)
        # each layer's residual scale, from the first batch: the unit its offset is learnt in
        scale = first[:-1].pow(2).mean(dim=(1, 2)).sqrt().clamp_min(1e-6)
        # one (d, d) matrix and one offset per layer: a layer's backward touches only its own
        weights = [w.detach().clone().to(lm.device).requires_grad_(True) for w in start.weight]
        biases = [(b.detach().to(lm.device) / s).requires_grad_(True)
                  for b, s in zip(start.bias, scale, strict=True)]
        optimizer = torch.optim.Adam([*weights, *biases], lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))))
        checkpoints = _Checkpoints(_Monitor(lm, monitor, batch_chunks) if monitor else None,
                                   weights, biases, scale)
        head, history, hidden, vocab_sizes = lm.head, [], first, []
        with _frozen(lm.model):
            for step in range(steps):
                if step and monitor_every and step % monitor_every == 0:
                    checkpoints.record(step)
                if step:
                    hidden = next(batches)
                log_final, entropy = _target(lm, hidden[-1])
                ids, log_weights = sampled_vocabulary(log_final, vocab_sample, top_k, generator)
                vocab_sizes.append(head.vocab_size if ids is None else len(ids))
                optimizer.zero_grad()
                total = 0.0
                for layer in range(lm.n_layers - 1):  # one layer's logits in memory at a time
                    moved = translate(hidden[layer:layer + 1], weights[layer].unsqueeze(0),
                                      scale[layer] * biases[layer].unsqueeze(0))[0]
                    logits = head.logits_at(head.normalize(moved), ids)
                    kl = _kl(log_final, entropy, logits, ids, log_weights).mean()
                    kl.backward()
                    total += kl.item()
                optimizer.step()
                schedule.step()
                history.append(total / max(lm.n_layers - 1, 1) / math.log(2))
        weight, bias = checkpoints.finish(steps)
        hyper = {"steps": steps, "lr": lr, "schedule": "cosine", "optimizer": "adam",
                 "rows_per_step": rows_per_step, "vocab_sample": vocab_sample, "top_k": top_k,
                 "objective": "exact KL" if vocab_sample is None else "importance-weighted KL",
                 "init": "logit lens" if init is None else f"{init.kind} {init.fingerprint()}",
                 "monitor_every": monitor_every}
        meta = fit_meta(lm, chunks, hyper, seed=seed, seconds=time.perf_counter() - started)
        meta["train_kl_bits"] = [round(value, 5) for value in history]
        meta["mean_vocab_per_step"] = round(sum(vocab_sizes) / len(vocab_sizes)) if steps else 0
        if checkpoints.monitor is not None:
            meta["monitor"] = checkpoints.summary()
        return cls(weight, bias, meta)


class _Checkpoints:
    """Each layer's translator at its lowest monitored KL (the last one without a monitor)."""

    def __init__(self, monitor: _Monitor | None, weights: list[torch.Tensor],
                 biases: list[torch.Tensor], scale: torch.Tensor) -> None:
        self.monitor, self.weights, self.biases, self.scale = monitor, weights, biases, scale
        self.steps: list[int] = []
        self.curves: list[list[float]] = []
        self.best: list[tuple[float, int, torch.Tensor, torch.Tensor] | None] = [None] * len(
            weights)
        self.record(0)

    def _current(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([w.detach().clone() for w in self.weights],
                [(s * b).detach().clone() for b, s in zip(self.biases, self.scale, strict=True)])

    def record(self, step: int) -> None:
        """Measure the monitor's KL now; keep every layer that improved on its best so far."""
        if self.monitor is None:
            return
        weights, biases = self._current()
        curve = self.monitor.kl_bits(weights, biases)
        self.steps.append(step)
        self.curves.append(curve)
        for layer, value in enumerate(curve):
            best = self.best[layer]
            if best is None or value < best[0]:
                self.best[layer] = (value, step, weights[layer], biases[layer])

    def finish(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The translators to keep, ``(weight, bias)`` stacked over layers."""
        if self.monitor is None:
            weights, biases = self._current()
            return torch.stack(weights), torch.stack(biases)
        if not self.steps or self.steps[-1] != steps:
            self.record(steps)
        return (torch.stack([best[2] for best in self.best]),
                torch.stack([best[3] for best in self.best]))

    def summary(self) -> dict:
        """The held-out curve for the lens's metadata."""
        return {"source": self.monitor.source, "n_tokens": self.monitor.n_tokens,
                "steps": self.steps,
                "kl_bits": [round(sum(c) / len(c), 5) for c in self.curves],
                "kl_bits_by_layer": [[round(v, 5) for v in c] for c in self.curves],
                "kept_step_by_layer": [best[1] for best in self.best]}
