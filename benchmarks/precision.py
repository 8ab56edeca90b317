"""bfloat16 against float32 on the offline models: memorized counts, agreement, timings.

Each model runs ``project`` over IdioMem in bfloat16 (chunks of 100 idioms, stopping after the
chunk that passes ``--limit-s`` seconds, since bfloat16 matmuls can be slow on a CPU) and in
float32 on all 852 idioms; the two are compared on the idioms both covered.

    python benchmarks/precision.py --device cpu     # ~25 min on a busy 2-core machine
"""
import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import memrecall as mr


def promotion_layer(ranks: np.ndarray) -> np.ndarray:
    """First 0-based layer from which the prediction stays at rank 0, per row."""
    stays = np.flip(np.cumprod(np.flip(ranks == 0, 1), 1), 1).astype(bool)
    return stays.argmax(1)


def compare(half: pd.DataFrame, full: pd.DataFrame) -> dict:
    """How far the bfloat16 lens results ``half`` are from the float32 ones on the same idioms."""
    mem_h, mem_f = half.is_memorized.to_numpy(), full.is_memorized.to_numpy()
    prob = np.abs(np.stack(half.target_prob) - np.stack(full.target_prob))
    rank_h, rank_f = np.stack(half.target_rank), np.stack(full.target_rank)
    return {
        "float32_same_subset_memorized": int(mem_f.sum()),
        "pred_token_agree": float((half.pred_token.to_numpy()
                                   == full.pred_token.to_numpy()).mean()),
        "is_memorized_agree": float((mem_h == mem_f).mean()),
        "memorized_only_bf16": int((mem_h & ~mem_f).sum()),
        "memorized_only_fp32": int((~mem_h & mem_f).sum()),
        "target_prob_abs_diff": {"median": float(np.median(prob)),
                                 "p99": float(np.quantile(prob, 0.99)),
                                 "max": float(prob.max()),
                                 "last_layer_max": float(prob[:, -1].max())},
        "target_rank_equal_fraction": float((rank_h == rank_f).mean()),
        "target_rank_equal_last_layer": float((rank_h[:, -1] == rank_f[:, -1]).mean()),
        "promotion_layer_equal": float(
            (promotion_layer(np.stack(half.pred_rank))
             == promotion_layer(np.stack(full.pred_rank))).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit-s", type=float, default=300)
    parser.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    args = parser.parse_args()
    idioms = mr.load_idiomem()["idiom"].astype(str).tolist()
    out = {}
    for name in args.models.split(","):
        runs = {}
        for dtype in ["bfloat16", "float32"]:
            lm = mr.load(name, device=args.device, dtype=dtype)
            probes = mr.make_probes(idioms, lm)
            parts, start, t1 = [], 0, time.perf_counter()
            while start < len(probes):
                parts.append(mr.project(lm, probes[start:start + 100], progress=False))
                start += 100
                if dtype == "bfloat16" and time.perf_counter() - t1 > args.limit_s:
                    break
            res = pd.concat(parts, ignore_index=True)
            runs[dtype] = (res, time.perf_counter() - t1)
            print(name, dtype, len(res), "idioms", f"{runs[dtype][1]:.0f} s",
                  int(res.is_memorized.sum()), "memorized", flush=True)
            del lm
        (b, bt), (f, ft) = runs["bfloat16"], runs["float32"]
        out[name] = {"idioms_compared": len(b),
                     "float32_all": {"n": len(f), "memorized": int(f.is_memorized.sum()),
                                     "seconds": round(ft, 1)},
                     "bfloat16": {"n": len(b), "memorized": int(b.is_memorized.sum()),
                                  "seconds": round(bt, 1)},
                     **compare(b, f[:len(b)])}
        print(json.dumps(out[name], indent=1), flush=True)
    path = (Path(__file__).resolve().parent / "results"
            / f"{datetime.date.today()}-precision-{args.device}.json")
    path.write_text(json.dumps({"device": args.device, "limit_s": args.limit_s, "models": out},
                               indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
