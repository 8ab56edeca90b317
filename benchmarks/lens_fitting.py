"""The ``lenses`` case of `make bench`: notebook 06's lens fitting per model against its FLOP bound.

For every model (``--lens-models``, default the offline profile's) with the offline profile's
lens budget (``--quick``: a small one): the linear shortcut's fit, the tuned lens's training
(from the shortcut, with its monitor) and the held-out KL of the three readings, each timed and
set against the FLOPs it needs at the least (:func:`lens_flops`) at the measured matmul rate.
"""

from __future__ import annotations

import argparse
import time

from measure import block_params

import memrecall as mr
from memrecall import lenses
from memrecall.lenses.base import LogitLens
from memrecall.profiles import LensBudget

QUICK_BUDGET = LensBudget(fit_tokens=1024, eval_tokens=256, tuned_steps=4, tuned_rows=128,
                          vocab_sample=1024, monitor_tokens=128, monitor_every=2)


def lens_flops(lm: mr.LM, budget: LensBudget, vocab_per_step: int) -> dict[str, float]:
    """FLOPs each phase needs at the least (matmuls only; norms and softmaxes are not counted).

    * ``shortcut``: one forward over the fit text (``2 x block parameters x tokens``), then the
      normal equations, ``x^T x`` and ``x^T y`` per layer (``4 (L - 1) n d^2``);
    * ``tuned``: per step the target (``2 rows V d``) and per layer the translator and the
      logits over the step's vocabulary, forward and backward (``4 rows d^2 + 4 rows k d``);
      per checkpoint the monitor's exact KL (``2 m V d`` for the target, ``(L - 1) (2 m d^2 +
      2 m V d)`` for the lens); one forward over the monitor text;
    * ``held_out``: one forward over the test text, the target and all layers of the three
      readings through the full vocabulary (``2 n V d (1 + 3 L)``), translators of the two
      fitted ones (``2 x 2 n (L - 1) d^2``).
    """
    d, vocab, layers = lm.arch.unembed_weight.shape[1], lm.vocab_size, lm.n_layers
    params = block_params(lm)
    n, rows, m = budget.fit_tokens, budget.tuned_rows, budget.monitor_tokens
    checkpoints = 1 + budget.tuned_steps // budget.monitor_every + 1
    per_step = 2 * rows * vocab * d + (layers - 1) * (4 * rows * d * d
                                                      + 4 * rows * vocab_per_step * d)
    monitor = 2 * m * vocab * d + (layers - 1) * (2 * m * d * d + 2 * m * vocab * d)
    test = budget.eval_tokens
    return {
        "shortcut": 2 * params * n + 4 * (layers - 1) * n * d * d,
        "tuned": (budget.tuned_steps * per_step + checkpoints * monitor + 2 * params * m),
        "held_out": (2 * params * test + 2 * test * vocab * d * (1 + 3 * layers)
                     + 4 * test * (layers - 1) * d * d),
    }


def bench_lenses(args: argparse.Namespace, rate: float, log) -> dict:
    """Fit both lenses and measure the held-out KL for each model; seconds against the bound."""
    budget = QUICK_BUDGET if args.quick else mr.PROFILES["offline"].lens
    records = {}
    for name in args.lens_models.split(","):
        lm = mr.load(name, device=args.device, dtype=args.dtype)
        fit, monitor = lenses.wikitext_chunks(
            lm, "valid", n_tokens=budget.fit_tokens + budget.monitor_tokens,
            chunk_len=budget.chunk_len).split(budget.monitor_tokens)
        test = lenses.wikitext_chunks(lm, "test", n_tokens=budget.eval_tokens,
                                      chunk_len=budget.chunk_len)
        shortcut = lenses.LinearShortcut.fit(lm, fit, ridge=budget.ridge)
        tuned = lenses.TunedLens.fit(lm, fit, init=shortcut, steps=budget.tuned_steps,
                                     lr=budget.tuned_lr, rows_per_step=budget.tuned_rows,
                                     vocab_sample=budget.vocab_sample, monitor=monitor,
                                     monitor_every=budget.monitor_every)
        start = time.perf_counter()
        lenses.held_out_kl(lm, test, {"logit lens": LogitLens(), "linear shortcut": shortcut,
                                      "tuned lens": tuned})
        seconds = {"shortcut": shortcut.meta["fit_seconds"], "tuned": tuned.meta["fit_seconds"],
                   "held_out": round(time.perf_counter() - start, 2)}
        flops = lens_flops(lm, budget, tuned.meta["mean_vocab_per_step"])
        phases = {phase: {"seconds": seconds[phase], "flops": flops[phase],
                          "bound_s": round(flops[phase] / (rate * 1e9), 2),
                          "vs_bound": round(seconds[phase] * rate * 1e9 / flops[phase], 2)}
                  for phase in seconds}
        records[name] = {"model": repr(lm), "budget": repr(budget),
                         "mean_vocab_per_step": tuned.meta["mean_vocab_per_step"],
                         "phases": phases}
        log(f"\n== lenses: {lm!r}")
        for phase, r in phases.items():
            log(f"   {phase:<9}{r['seconds']:>9.1f} s  bound {r['bound_s']:>8.1f} s "
                f"({r['flops'] / 1e12:.2f} TFLOP)  x bound {r['vs_bound']:.2f}")
        del lm
    return {"budget": repr(budget), "models": records}
