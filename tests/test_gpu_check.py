"""benchmarks/gpu_check.sh plans its steps, and without CUDA says what to install."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
STEPS = ["tests-cuda", "tests", "reproduce", "bench-float32", "bench-bfloat16"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
def test_dry_run_plans_every_step_within_the_budget():
    done = run("--dry-run")
    assert done.returncode == 0, done.stderr
    for step in STEPS:
        assert f"] {step} (budget" in done.stdout or f"skip {step}:" in done.stdout
    assert "would take at most 480s" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only torch")
def test_without_cuda_it_says_what_to_install():
    done = run()
    assert done.returncode == 3
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" in done.stderr
