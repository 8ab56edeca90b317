"""`make bench`: time `memrecall.project` against the authors' per-example loop and a plain forward.

Cases (same model, same inputs, same process for every method of a case):

* ``gpt2-medium-shape``: GPT-2 medium's shape (24 layers, d=1024, vocab 50257) with random
  weights, built from a config (no download), the real GPT-2 BPE (offline); the 852 IdioMem idioms.
* ``gemma-3-270m``: the packaged Gemma 3 270M (vocabulary 262k): the same timings, then the
  memory test: peak extra RSS of ``project`` over all IdioMem + ``--wiki`` Wikipedia prompts.
* ``lenses``: notebook 06's lens fitting and held-out KL per model against its FLOP bound
  (:mod:`lens_fitting`).
* ``attention``: notebook 07's attention-edge sweep on the knockout case's model and probes
  (both windows, four source sets) against its FLOP lower bound (:mod:`attention_edges`).
* ``sweep-bounds``: nothing timed: the FLOPs of notebooks 05 and 07's sweeps for every model
  of a profile at the measured matmul rate (:mod:`sweep_bounds`).
* ``knockout``: the paper's knockout design on the packaged Gemma 3 270M (``--knockout-model``):
  ``--knockout-probes`` memorized idioms, as many non-memorized ones and Wikipedia prompts
  (seeded), the dominant / non-dominant / random controls, k = 10, windows of 1-3 layers.
  ``interventions.knockout_sweep`` against its FLOP lower bound (each row's blocks from its
  window's first layer over the real tokens, plus the head at the prediction position, at the
  measured matmul rate) and against the per-configuration loop it replaced.

The authors' loop takes seconds per text, so it runs on the first ``--baseline-texts`` texts and
is extrapolated per text to the full set; the per-configuration knockout loop runs
``--baseline-configs`` configurations spread over the grid and is extrapolated per configuration
(the output says so), its verdicts compared with the sweep's on those. Each record is written to
``benchmarks/results/<date>-<host>[-<gpu>][-<dtype>].json``.

    python benchmarks/run.py                 # full run (~15-20 min on 2 CPU cores)
    python benchmarks/run.py --quick         # smoke run: 1 repetition, small subsets
    python benchmarks/run.py --cases gpt2-medium-shape --reps 5
    python benchmarks/run.py --cases knockout --threads 1   # minutes; a busy machine: more
    python benchmarks/run.py --device cuda --dtype bfloat16          # on a GPU (gpu_check.sh)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import memrecall as mr
from memrecall import interventions
from memrecall.forward.batching import (
    activation_token_budget,
    batch_overhead_tokens,
    model_inputs,
    plan_batches,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_edges import bench_attention  # noqa: E402
from baselines import (  # noqa: E402
    agreement,
    authors_loop,
    padded_tokens,
    per_config_sweep,
    plain_forward,
)
from lens_fitting import bench_lenses  # noqa: E402
from measure import (  # noqa: E402
    PeakMemory,
    environment,
    flop_counts,
    knockout_flops,
    matmul_rate,
    rss,
    summary,
    timed,
)
from sweep_bounds import bench_sweep_bounds  # noqa: E402

CASES = ["gpt2-medium-shape", "gemma-3-270m", "knockout", "attention", "lenses", "sweep-bounds"]
RESULTS = Path(__file__).resolve().parent / "results"
GIB = 2**30


def gpt2_medium_shape(device: str, dtype: str) -> mr.LM:
    from transformers import GPT2Config, GPT2LMHeadModel

    from memrecall.models.tiny import gpt2_tokenizer

    torch.manual_seed(0)
    config = GPT2Config(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257)
    model = GPT2LMHeadModel(config).to(device, getattr(torch, dtype))
    return mr.wrap(model, gpt2_tokenizer(), name="gpt2-medium-shape",
                   revision="random-init seed=0")


def load_case(name: str, args: argparse.Namespace) -> mr.LM:
    if name == "gpt2-medium-shape":
        return gpt2_medium_shape(args.device, args.dtype)
    return mr.load(name, device=args.device, dtype=args.dtype)


def device_name(device: str) -> str:
    """The accelerator's name (``NVIDIA H100 80GB HBM3``), or ``cpu``."""
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def slug(text: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3`` (a file-name part)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def log(message: str) -> None:
    print(message, flush=True)


def bench_case(name: str, args: argparse.Namespace, rate: float) -> dict:
    start = time.perf_counter()
    lm = load_case(name, args)
    load_s = time.perf_counter() - start
    rss_loaded = rss()
    log(f"\n== {name}: {lm!r}\n   loaded in {load_s:.1f} s, RSS {rss_loaded / GIB:.2f} GiB")

    texts = mr.load_idiomem()["idiom"].astype(str).tolist()[: args.texts]
    probes = mr.make_probes(texts, lm)
    prompts = probes["prompt"].tolist()
    n = len(probes)
    ids, _ = model_inputs(lm, prompts)
    flops = flop_counts(lm, ids)
    bound_s = flops["total"] / (rate * 1e9)
    batches = plan_batches([len(r) for r in ids], activation_token_budget(lm), None,
                           batch_overhead_tokens(lm))
    planned = sum(len(b) * max(len(ids[i]) for i in b) for b in batches)
    padded64 = padded_tokens(lm, prompts, 64)
    log(f"   {n} IdioMem texts, {flops['real_tokens']} real tokens; project plans "
        f"{len(batches)} batches, {planned} padded tokens; batch 64 in input order pads to "
        f"{padded64}")
    log(f"   FLOP lower bound {flops['total'] / 1e12:.2f} TFLOP (forward "
        f"{flops['forward'] / 1e12:.2f} + attention {flops['attention'] / 1e12:.3f} + lens "
        f"{flops['lens'] / 1e12:.2f}) = {bound_s:.1f} s at {rate:.0f} GFLOP/s")

    record: dict = {"model": repr(lm), "load_s": round(load_s, 1),
                    "rss_after_load_gib": round(rss_loaded / GIB, 3), "texts": n,
                    "flops": flops, "bound_s": round(bound_s, 2),
                    "project_batches": len(batches), "project_padded_tokens": planned,
                    "batch64_padded_tokens": padded64, "methods": {}}
    methods = record["methods"]

    mr.project(lm, probes[:8], progress=False)  # warm-up (allocator, kernels)
    with PeakMemory() as memory:
        seconds, ours = timed(lambda: mr.project(lm, probes, progress=False), args.reps)
    methods["project"] = summary(seconds, n) | {
        "peak_extra_rss_gib": round(memory.extra / GIB, 3),
        "peak_extra_cuda_gib": round(memory.cuda_extra / GIB, 3)}
    log(f"   project: {methods['project']['min_s']:.1f} s min, "
        f"{methods['project']['median_s']:.1f} s median over {args.reps}")

    seconds, _ = timed(lambda: plain_forward(lm, prompts, 64), args.reps)
    methods["plain_forward_b64"] = summary(seconds, n)
    log(f"   plain forward (backbone, batch 64, padded): "
        f"{methods['plain_forward_b64']['min_s']:.1f} s min")

    subset = min(args.baseline_texts, n)
    if subset:
        seconds, theirs = timed(lambda: authors_loop(lm, probes[:subset]), args.baseline_reps)
        methods["authors_loop"] = summary(seconds, n, scale=n / subset) | {
            "measured_texts": subset, "extrapolated": subset < n}
        record["agreement_with_authors_loop"] = agreement(ours[:subset].reset_index(), theirs)
        log(f"   authors' loop: {min(seconds):.1f} s on {subset} texts -> "
            f"{methods['authors_loop']['min_s']:.0f} s extrapolated to {n}")

    # GFLOP/s of the work each method does: the task's lower bound for the two that compute the
    # lens, the padded forward alone for the plain forward pass.
    forward_flops = 2 * flops["block_params"] * padded64 + flops["attention"]
    best = methods["project"]["min_s"]
    for method, result in methods.items():
        work = forward_flops if method == "plain_forward_b64" else flops["total"]
        result["vs_project"] = round(result["min_s"] / best, 2)
        result["work_flops"] = work
        result["achieved_gflops"] = round(work / result["min_s"] / 1e9, 1)
        result["vs_bound"] = round(result["min_s"] / bound_s, 2)

    if name == "gemma-3-270m" and args.wiki:
        wiki = mr.load_wiki(args.wiki)["text"].astype(str).tolist()
        everything = mr.make_probes(mr.load_idiomem()["idiom"].astype(str).tolist() + wiki, lm)
        with PeakMemory() as memory:
            seconds, _ = timed(lambda: mr.project(lm, everything, progress=False), 1)
        record["memory_test"] = {
            "texts": len(everything), "wiki": args.wiki, "seconds": round(seconds[0], 1),
            "rss_before_gib": round(memory.before / GIB, 3),
            "peak_rss_gib": round(memory.peak / GIB, 3),
            "peak_extra_rss_gib": round(memory.extra / GIB, 3),
            "peak_extra_cuda_gib": round(memory.cuda_extra / GIB, 3),
            "target_gib": 3.0, "met": memory.extra < 3 * GIB}
        log(f"   memory test ({len(everything)} texts: IdioMem + {args.wiki} Wikipedia): "
            f"peak extra RSS {memory.extra / GIB:.2f} GiB in {seconds[0]:.0f} s")
    return record


def knockout_probes(lm: mr.LM, n: int, seed: int = 0) -> pd.DataFrame:
    """The paper's design's probes: ``n`` memorized and ``n`` non-memorized idioms of ``lm``
    (``project`` on a seeded shuffle of IdioMem, in chunks, until both are found or the idioms
    run out) and ``n`` Wikipedia prompts (the length-matched control), with a ``group`` column."""
    texts = mr.load_idiomem()["idiom"].astype(str).to_numpy()
    texts = texts[np.random.default_rng(seed).permutation(len(texts))].tolist()
    found: dict[bool, list[pd.DataFrame]] = {True: [], False: []}
    chunk = max(50, 3 * n)
    for start in range(0, len(texts), chunk):
        probes = mr.make_probes(texts[start:start + chunk], lm)
        memorized = mr.project(lm, probes, progress=False)["is_memorized"].to_numpy()
        found[True].append(probes[memorized])
        found[False].append(probes[~memorized])
        if min(sum(map(len, found[True])), sum(map(len, found[False]))) >= n:
            break
    wiki = mr.make_probes(mr.load_wiki(n, seed=seed)["text"].astype(str).tolist(), lm)
    parts = [pd.concat(found[True])[:n].assign(group="memorized"),
             pd.concat(found[False])[:n].assign(group="non-memorized"),
             wiki.assign(group="wikipedia")]
    return pd.concat(parts, ignore_index=True)


def bench_knockout(args: argparse.Namespace, rate: float) -> dict:
    """The paper's knockout design: ``knockout_sweep`` against its FLOP lower bound and against
    the per-configuration loop it replaced (run on a spread subset of configurations,
    extrapolated per configuration), with the verdicts compared on that subset."""
    start = time.perf_counter()
    lm = mr.load(args.knockout_model, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - start
    probes = knockout_probes(lm, args.knockout_probes)
    n = len(probes)
    d_ff = interventions.mlp_width(lm)
    configs = interventions.knockout_configs(lm.n_layers, d_ff)  # the paper's design
    m = len(configs)
    subset = configs.iloc[np.unique(np.linspace(0, m - 1, min(args.baseline_configs, m))
                                    .round().astype(int))]
    ids, _ = model_inputs(lm, probes["prompt"].astype(str).tolist())
    flops = knockout_flops(lm, ids, configs["start_layer"].tolist())
    bound_s = flops["total"] / (rate * 1e9)
    sizes = probes["group"].value_counts().to_dict()
    log(f"\n== knockout: {lm!r}\n   loaded in {load_s:.1f} s; probes {sizes}; {m} "
        f"configurations (dominant / non-dominant / random, k = 10, windows of 1-3 layers) = "
        f"{flops['rows']} rows; FLOP lower bound {flops['total'] / 1e12:.1f} TFLOP (blocks "
        f"{flops['blocks'] / 1e12:.1f} + attention {flops['attention'] / 1e12:.2f} + head "
        f"{flops['head'] / 1e12:.1f}) = {bound_s:.0f} s at {rate:.0f} GFLOP/s")

    interventions.knockout_sweep(lm, probes[:4], max_window=1, controls=("dominant",),
                                 progress=False)  # warm-up
    load_before = os.getloadavg()
    seconds, ours = timed(lambda: interventions.knockout_sweep(lm, probes, per_probe=True,
                                                               progress=False),
                          args.knockout_reps)
    record: dict = {"model": repr(lm), "load_s": round(load_s, 1), "probes": n,
                    "groups": sizes, "configs": m, "rows": flops["rows"], "flops": flops,
                    "bound_s": round(bound_s, 1), "loadavg_before_sweep": load_before,
                    "loadavg_after_sweep": os.getloadavg(), "methods": {}}
    methods = record["methods"]
    methods["knockout_sweep"] = {"seconds": [round(x, 1) for x in seconds],
                                 "min_s": round(min(seconds), 1)}
    log(f"   knockout_sweep: {min(seconds):.0f} s (load average {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after)")

    dominant = interventions.top_neurons(lm, probes, k=10)
    random = interventions.random_neurons(n, lm.n_layers, d_ff, 10, 0)  # the sweep's draw
    loop_s, theirs = timed(lambda: per_config_sweep(lm, probes, subset, dominant.indices,
                                                    random, dominant.pred_token), 1)
    scale = m / len(subset)
    methods["per_config_loop"] = {"measured_s": round(loop_s[0], 1),
                                  "measured_configs": len(subset),
                                  "min_s": round(loop_s[0] * scale, 1), "extrapolated": True}
    log(f"   per-configuration loop (before): {loop_s[0]:.0f} s on {len(subset)} configurations "
        f"-> {loop_s[0] * scale:.0f} s extrapolated to {m}")
    for result in methods.values():
        result["vs_bound"] = round(result["min_s"] / bound_s, 2)
        result["vs_sweep"] = round(result["min_s"] / methods["knockout_sweep"]["min_s"], 2)

    keys = ["control", "k", "start_layer", "end_layer"]
    mine = (subset.reset_index(names="config")[["config", *keys]]
            .merge(ours, on=keys).merge(theirs, on=["config", "probe"], suffixes=("", "_loop")))
    record["agreement_with_per_config_loop"] = {
        "pairs": len(mine), "configs": len(subset),
        "pred_token_equal": float((mine["pred_token"] == mine["pred_token_loop"]).mean()),
        "changed_equal": float((mine["changed"] == mine["changed_loop"]).mean()),
        "target_rank_equal": float((mine["target_rank"] == mine["target_rank_loop"]).mean()),
        "target_prob_max_abs_diff": float((mine["target_prob"]
                                           - mine["target_prob_loop"]).abs().max())}
    if args.knockout_detail:
        ours.to_parquet(args.knockout_detail)
        log(f"   per-probe sweep written to {args.knockout_detail}")
    return record


def print_knockout(record: dict) -> None:
    """The knockout case's table: seconds, against the bound and the sweep; agreement."""
    agree = record["agreement_with_per_config_loop"]
    log(f"\nknockout: {record['probes']} probes x {record['configs']} configurations = "
        f"{record['rows']} rows; lower bound {record['bound_s']:.0f} s")
    log(f"  {'method':<22}{'s':>9}{'x bound':>9}{'x sweep':>9}")
    for method, r in record["methods"].items():
        note = (f" (extrapolated from {r['measured_configs']} configurations)"
                if r.get("extrapolated") else "")
        log(f"  {method:<22}{r['min_s']:>9.0f}{r['vs_bound']:>9.2f}{r['vs_sweep']:>9.2f}{note}")
    log(f"  agreement on {agree['configs']} configurations ({agree['pairs']} rows): prediction "
        f"{agree['pred_token_equal']:.2%}, changed verdict {agree['changed_equal']:.2%}, target "
        f"rank {agree['target_rank_equal']:.2%}, target probability within "
        f"{agree['target_prob_max_abs_diff']:.1e}")


def print_table(name: str, record: dict) -> None:
    log(f"\n{name}: {record['texts']} texts, lower bound {record['bound_s']:.1f} s")
    log(f"  {'method':<22}{'min s':>9}{'median s':>10}{'texts/s':>9}{'x project':>11}"
        f"{'GFLOP/s':>9}{'x bound':>9}")
    for method, r in record["methods"].items():
        note = " (extrapolated)" if r.get("extrapolated") else ""
        log(f"  {method:<22}{r['min_s']:>9.1f}{r['median_s']:>10.1f}{r['texts_per_s']:>9.1f}"
            f"{r['vs_project']:>11.2f}{r['achieved_gflops']:>9.1f}{r['vs_bound']:>9.2f}{note}")


def targets(records: dict) -> dict:
    out = {}
    gpt2 = records.get("gpt2-medium-shape")
    if gpt2 and "authors_loop" in gpt2["methods"]:
        speedup = gpt2["methods"]["authors_loop"]["vs_project"]
        out["speedup_vs_authors_ge_30x"] = {"value": speedup, "met": speedup >= 30}
    if gpt2:
        ratio = gpt2["methods"]["project"]["vs_bound"]
        out["within_1.5x_of_bound"] = {"value": ratio, "met": ratio <= 1.5}
        faster = gpt2["methods"]["plain_forward_b64"]["vs_project"]
        out["faster_than_plain_padded_forward"] = {"value": faster, "met": faster > 1}
    knock = records.get("knockout")
    if knock:
        ratio = knock["methods"]["knockout_sweep"]["vs_bound"]
        out["knockout_within_2x_of_bound"] = {"value": ratio, "met": ratio <= 2}
        same = knock["agreement_with_per_config_loop"]["changed_equal"]
        out["knockout_verdicts_identical"] = {"value": same, "met": same == 1.0}
    attention = records.get("attention")
    if attention:
        out["attention_within_2x_of_bound"] = {"value": attention["vs_bound"],
                                               "met": attention["vs_bound"] <= 2}
    gemma = records.get("gemma-3-270m", {}).get("memory_test")
    if gemma:
        out["gemma_peak_extra_under_3gb"] = {"value": gemma["peak_extra_rss_gib"],
                                             "met": gemma["met"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {CASES}")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of project / forward")
    parser.add_argument("--texts", type=int, default=None, help="first N idioms (default all)")
    parser.add_argument("--baseline-texts", type=int, default=40,
                        help="texts the authors' loop runs on (extrapolated per text)")
    parser.add_argument("--baseline-reps", type=int, default=1)
    parser.add_argument("--knockout-reps", type=int, default=1,
                        help="repetitions of the knockout sweep")
    parser.add_argument("--knockout-model", default="gemma-3-270m",
                        help="the knockout case's model")
    parser.add_argument("--knockout-probes", type=int, default=100,
                        help="probes per group in the knockout case (the paper: 100)")
    parser.add_argument("--baseline-configs", type=int, default=12,
                        help="configurations the per-configuration loop runs (extrapolated)")
    parser.add_argument("--knockout-detail", type=Path, default=None,
                        help="write the knockout case's per-probe sweep here (parquet)")
    parser.add_argument("--lens-models", default=",".join(mr.profile_models("offline")),
                        help="the lenses case's models (comma-separated)")
    parser.add_argument("--bound-models", default=",".join(mr.profile_models("offline")),
                        help="the sweep-bounds case's models (comma-separated)")
    parser.add_argument("--wiki", type=int, default=1000,
                        help="Wikipedia prompts added for the Gemma memory test (0: skip)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, 8 baseline texts, 100 Wikipedia prompts, "
                        "8 knockout probes per group, 4 baseline configurations")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of a CPU run (default: torch's choice, one per core)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the models run (the record's name says which)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="the models' dtype (the lens reduces in float32 regardless)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.baseline_texts, args.baseline_reps = 1, 8, 1
        args.wiki = min(args.wiki, 100)
        args.knockout_probes = min(args.knockout_probes, 8)
        args.baseline_configs = min(args.baseline_configs, 4)
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {CASES}")
    if not os.environ.get("MEMRECALL_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["MEMRECALL_DATA_DIR"] = str(Path("../shared/data").resolve())

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch sees no CUDA device (torch "
                     f"{torch.__version__}); see benchmarks/gpu_check.sh")
    if args.threads and args.device == "cpu":  # CPU threads only: never touch a CUDA run
        torch.set_num_threads(args.threads)
    env = environment()
    log(f"torch {env['torch']}, {env['threads']} threads, {env['cpu']}, CUDA {env['cuda']}, "
        f"load average {env['loadavg_1m']} (other processes skew every number)")
    log(f"device {args.device}, dtype {args.dtype}")
    rate = matmul_rate(device=args.device, dtype=getattr(torch, args.dtype))
    log(f"{args.dtype} matmul {rate['size']}^2 on {args.device}: {rate['best_gflops']} GFLOP/s "
        f"best, {rate['median_gflops']} median (the lower bound uses the best)")

    records = {}
    for name in cases:
        if name == "knockout":
            records[name] = bench_knockout(args, rate["best_gflops"])
            print_knockout(records[name])
            continue
        if name == "attention":
            records[name] = bench_attention(args, rate["best_gflops"], log, knockout_probes)
            continue
        if name == "lenses":
            records[name] = bench_lenses(args, rate["best_gflops"], log)
            continue
        if name == "sweep-bounds":
            records[name] = bench_sweep_bounds(args, rate["best_gflops"], log, knockout_probes)
            continue
        records[name] = bench_case(name, args, rate["best_gflops"])
        print_table(name, records[name])
    met = targets(records)
    log("\ntargets:")
    for key, value in met.items():
        log(f"  {key}: {value['value']} -> {'met' if value['met'] else 'NOT met'}")

    env_after = environment()
    stamp = datetime.datetime.now()
    host = socket.gethostname().split(".")[0] or platform.node() or "host"
    record = {"date": stamp.isoformat(timespec="seconds"), "host": host,
              "argv": sys.argv[1:], "quick": args.quick, "reps": args.reps,
              "device": args.device, "device_name": device_name(args.device),
              "dtype": args.dtype,
              "environment": env, "loadavg_1m_after": env_after["loadavg_1m"],
              "matmul": rate, "cases": records, "targets": met}
    args.out.mkdir(parents=True, exist_ok=True)
    tags = [host] + ([slug(device_name(args.device))] if args.device != "cpu" else []) \
        + ([args.dtype] if args.dtype != "float32" else []) + (["quick"] if args.quick else [])
    path = args.out / f"{stamp:%Y-%m-%d-%H%M}-{'-'.join(tags)}.json"
    path.write_text(json.dumps(record, indent=1, default=float) + "\n")
    log(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
