"""The ``sweep-bounds`` case of `make bench`: what notebooks 05 and 07's sweeps cost here.

For each model of ``--bound-models`` (default: the offline profile's), on the knockout case's
probes (``--knockout-probes`` memorized idioms drawn from all of IdioMem, as many non-memorized
ones and Wikipedia prompts; the notebooks take their memorized group from the run's population,
which can hold fewer), the FLOPs of notebook 05's knockout sweep (k = 10, windows of 1-3 layers,
the three controls; twice for a model with a norm after its MLP, which notebook 05 also sweeps
with that norm free) and of notebook 07's attention-edge sweep (both windows, the four source
sets), counted as :func:`measure.knockout_flops` counts them, at the measured matmul rate.
Nothing is timed: it says how much of ``make reproduce``'s time these two sweeps need on this
machine at that rate (cases ``knockout`` and ``attention`` time the real ones).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pandas as pd
from attention_edges import attention_flops
from measure import knockout_flops

import memrecall as mr
from memrecall import interventions
from memrecall.forward.batching import model_inputs


def sweep_bounds(lm: mr.LM, probes: pd.DataFrame, rate: float) -> dict:
    """Both sweeps' FLOPs on ``probes`` and their seconds at ``rate`` GFLOP/s."""
    prompts = probes["prompt"].astype(str).tolist()
    ids, _ = model_inputs(lm, prompts)
    knockout_configs = interventions.knockout_configs(lm.n_layers, interventions.mlp_width(lm))
    sweeps = 2 if lm.arch.has_post_mlp_norm else 1  # frozen and free norm (notebook 05)
    knockout = sweeps * knockout_flops(lm, ids, knockout_configs["start_layer"].tolist())["total"]
    windows = interventions.attention_windows(lm.n_layers)
    attention_configs = interventions.attention_configs(lm.n_layers, windows)
    attention = attention_flops(lm, prompts, attention_configs)["total"]
    return {"probes": len(probes), "groups": probes["group"].value_counts().to_dict(),
            "knockout_configs": len(knockout_configs), "knockout_sweeps": sweeps,
            "knockout_flops": knockout, "knockout_bound_s": round(knockout / (rate * 1e9), 1),
            "attention_configs": len(attention_configs), "attention_flops": attention,
            "attention_bound_s": round(attention / (rate * 1e9), 1)}


def bench_sweep_bounds(args: argparse.Namespace, rate: float, log: Callable[[str], None],
                       probes_of: Callable[[mr.LM, int], pd.DataFrame]) -> dict:
    """:func:`sweep_bounds` for every model of ``args.bound_models``; their sum."""
    models: dict[str, dict] = {}
    for name in [m for m in args.bound_models.split(",") if m]:
        start = time.perf_counter()
        lm = mr.load(name, device=args.device, dtype=args.dtype)
        probes = probes_of(lm, args.knockout_probes)
        models[name] = sweep_bounds(lm, probes, rate)
        record = models[name]
        log(f"\n== sweep bounds: {lm!r} ({time.perf_counter() - start:.0f} s to load and pick "
            f"probes {record['groups']})\n   notebook 05: {record['knockout_sweeps']} x "
            f"{record['knockout_configs']} configurations, {record['knockout_bound_s']:.0f} s; "
            f"notebook 07: {record['attention_configs']} configurations, "
            f"{record['attention_bound_s']:.0f} s (at {rate:.0f} GFLOP/s)")
        del lm
    total = sum(r["knockout_bound_s"] + r["attention_bound_s"] for r in models.values())
    log(f"   sum over {len(models)} models: {total:.0f} s for the two sweeps' FLOPs at this "
        f"matmul rate")
    return {"models": models, "rate_gflops": rate, "bound_s": round(total, 1)}
