"""benchmarks/sweep_bounds.py: the FLOP floor of notebooks 05 and 07's sweeps per model."""

import argparse
import sys
from pathlib import Path

import pandas as pd
import pytest

import memrecall as mr
from memrecall import interventions
from memrecall.forward.batching import model_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from attention_edges import attention_flops  # noqa: E402
from measure import knockout_flops  # noqa: E402
from sweep_bounds import bench_sweep_bounds, sweep_bounds  # noqa: E402

TEXTS = ["spill the beans", "break the ice", "a piece of cake", "the river runs to the sea",
         "once in a blue moon", "bite the bullet"]


def probes_of(lm: mr.LM, n: int) -> pd.DataFrame:
    """Two probes per group (the bench picks them by projecting IdioMem; the bound only needs
    their tokens)."""
    probes = mr.make_probes(TEXTS, lm)
    return probes.assign(group=["memorized"] * 2 + ["non-memorized"] * 2 + ["wikipedia"] * 2)


@pytest.mark.parametrize("name, sweeps", [("tiny-llama", 1), ("tiny-gemma3", 2)])
def test_the_bound_counts_every_configuration_of_both_sweeps(name, sweeps):
    lm = mr.load(name, device="cpu")
    probes = probes_of(lm, 2)
    bound = sweep_bounds(lm, probes, rate=10.0)

    ids, _ = model_inputs(lm, probes["prompt"].tolist())
    configs = interventions.knockout_configs(lm.n_layers, interventions.mlp_width(lm))
    one_sweep = knockout_flops(lm, ids, configs["start_layer"].tolist())["total"]
    windows = interventions.attention_windows(lm.n_layers)
    attention = attention_flops(lm, probes["prompt"].tolist(),
                                interventions.attention_configs(lm.n_layers, windows))["total"]
    assert bound["knockout_sweeps"] == sweeps  # Gemma 3 is swept with its post-MLP norm free too
    assert bound["knockout_flops"] == sweeps * one_sweep
    assert bound["attention_flops"] == attention > 0
    assert bound["knockout_bound_s"] == round(sweeps * one_sweep / 10e9, 1)
    assert bound["groups"] == {"memorized": 2, "non-memorized": 2, "wikipedia": 2}


def test_the_sum_over_models_is_the_floor_and_scales_with_the_rate():
    args = argparse.Namespace(bound_models="tiny-llama,tiny-gemma3", knockout_probes=2,
                              device="cpu", dtype="float32")
    slow = bench_sweep_bounds(args, 1e-3, lambda message: None, probes_of)
    fast = bench_sweep_bounds(args, 2e-3, lambda message: None, probes_of)
    assert list(slow["models"]) == ["tiny-llama", "tiny-gemma3"]
    parts = [r["knockout_bound_s"] + r["attention_bound_s"] for r in slow["models"].values()]
    assert slow["bound_s"] == pytest.approx(sum(parts), abs=0.05)  # each part rounded to 0.1 s
    # twice the matmul rate, half the floor (to the rounding of the parts)
    assert fast["bound_s"] == pytest.approx(slow["bound_s"] / 2, abs=0.1)
