"""The ``attention`` case of `make bench`: the attention-edge sweep against its FLOP bound.

On the knockout case's model (``--knockout-model``, default Gemma 3 270M) and probes (the paper's
design: ``--knockout-probes`` memorized, non-memorized and Wikipedia probes), both windows (one
layer and the one nearest 20% of the depth) at every start layer, the four source sets: the whole
:func:`memrecall.interventions.attention_sweep` timed, and set against the FLOPs its rows need at
the least (:func:`attention_flops`) at the measured matmul rate.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import pandas as pd
from measure import knockout_flops, timed

import memrecall as mr
from memrecall import interventions
from memrecall.forward.batching import model_inputs


def attention_flops(lm: mr.LM, prompts: list[str], configs: pd.DataFrame) -> dict:
    """FLOPs of the rows the sweep runs: per source set, its configurations on the probes whose
    set is not empty (:func:`measure.knockout_flops`: the blocks from each window's first layer
    over the probe's real tokens, the head at the prediction position)."""
    ids, _ = model_inputs(lm, prompts)
    found = interventions.source_positions(lm, prompts)
    total: dict[str, float] = {}
    for sources, rows in configs.groupby("sources", sort=False):
        probes = [ids[i] for i, positions in enumerate(found[sources]) if positions]
        if probes:
            part = knockout_flops(lm, probes, rows["start_layer"].tolist())
            total = {key: total.get(key, 0) + value for key, value in part.items()}
    return total


def bench_attention(args: argparse.Namespace, rate: float, log: Callable[[str], None],
                    probes_of: Callable[[mr.LM, int], pd.DataFrame]) -> dict:
    """Time the whole attention sweep on the knockout case's model and probes; its bound."""
    start = time.perf_counter()
    lm = mr.load(args.knockout_model, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - start
    probes = probes_of(lm, args.knockout_probes)
    prompts = probes["prompt"].astype(str).tolist()
    windows = interventions.attention_windows(lm.n_layers)
    configs = interventions.attention_configs(lm.n_layers, windows)
    flops = attention_flops(lm, prompts, configs)
    bound_s = flops["total"] / (rate * 1e9)
    sizes = probes["group"].value_counts().to_dict()
    log(f"\n== attention: {lm!r}\n   loaded in {load_s:.1f} s; probes {sizes}; windows "
        f"{windows}, {len(configs)} configurations; {flops['rows']} rows with something to "
        f"block (of {len(configs) * len(probes)}); FLOP lower bound {flops['total'] / 1e12:.1f} "
        f"TFLOP (blocks {flops['blocks'] / 1e12:.1f} + attention {flops['attention'] / 1e12:.2f} "
        f"+ head {flops['head'] / 1e12:.1f}) = {bound_s:.0f} s at {rate:.0f} GFLOP/s")
    interventions.attention_sweep(lm, probes[:4], windows=(1,), sources=("content",),
                                  progress=False)  # warm-up
    load_before = os.getloadavg()
    seconds, detail = timed(lambda: interventions.attention_sweep(lm, probes, progress=False),
                            args.knockout_reps)
    ratio = min(seconds) / bound_s
    log(f"   attention_sweep: {min(seconds):.0f} s = {ratio:.2f} x bound (load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after)")
    return {"model": repr(lm), "load_s": round(load_s, 1), "probes": len(probes),
            "groups": sizes, "windows": list(windows), "configs": len(configs),
            "rows": len(detail), "rows_run": flops["rows"], "flops": flops,
            "bound_s": round(bound_s, 1), "seconds": [round(x, 1) for x in seconds],
            "min_s": round(min(seconds), 1), "vs_bound": round(ratio, 2),
            "loadavg_before_sweep": load_before, "loadavg_after_sweep": os.getloadavg()}
