"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest
import torch

import memrecall as mr


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where CUDA is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared reference data folder ($MEMRECALL_DATA_DIR, else ../shared/data)."""
    env = os.environ.get("MEMRECALL_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (path / "idiomem" / "idiomem.jsonl").is_file():
        pytest.fail(f"shared data folder not found at {path}; set MEMRECALL_DATA_DIR")
    return path


@pytest.fixture(scope="module", params=mr.profile_models("smoke"))
def tiny(request) -> mr.LM:
    """Each tiny random model in turn: GPT-2, Llama, Gemma 3 and BERT."""
    return mr.load(request.param, device="cpu")
