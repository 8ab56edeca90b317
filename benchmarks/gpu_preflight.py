"""What a GPU check can run with this interpreter, as shell assignments (``KEY=value``).

``benchmarks/gpu_check.sh`` evaluates the output. Keys: ``TORCH`` (version), ``CUDA`` (1 when a
CUDA device is visible), ``DEVICE_NAME``, ``MEMRECALL`` (1 when the package imports, with its
version pins met or not: ``PIN_MISMATCHES``), ``OFFLINE_MODELS`` (1 when both packaged models
load without a network), ``DATA`` (1 when IdioMem resolves), ``GPT2_BPE`` (1 when the GPT-2 BPE
files of the benchmark's GPT-2-medium shape are there), ``NOTEBOOK_DEPS`` (papermill and a
kernel).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pin_mismatches() -> list[str]:
    """``name==pinned (installed X)`` for each pyproject pin this environment does not meet."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("dependencies = ["):].split("]", 1)[0]
    out = []
    for name, pinned in re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', block):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed.split("+")[0] != pinned:
            out.append(f"{name}=={pinned} (installed {installed})")
    return out


def packaged_model(name: str) -> None:
    """Raise unless the packaged GGUF file of registry model ``name`` is on this machine."""
    from memrecall.models import REGISTRY

    path = REGISTRY[name].gguf[1]()
    if not Path(path).is_file():
        raise FileNotFoundError(path)


def check(fn) -> int:
    try:
        fn()
        return 1
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return 0


def main() -> None:
    values: dict[str, object] = {"TORCH": "missing", "CUDA": 0, "DEVICE_NAME": "cpu",
                                 "MEMRECALL": 0, "PIN_MISMATCHES": "", "OFFLINE_MODELS": 0,
                                 "DATA": 0, "GPT2_BPE": 0, "NOTEBOOK_DEPS": 0}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        values["TORCH"] = torch.__version__
        if torch.cuda.is_available():
            values["CUDA"] = 1
            values["DEVICE_NAME"] = torch.cuda.get_device_name()
    if importlib.util.find_spec("memrecall") is not None and torch is not None:
        import memrecall as mr
        from memrecall.models import profile_models
        from memrecall.models.tiny import gpt2_tokenizer

        values["MEMRECALL"] = 1
        values["PIN_MISMATCHES"] = "; ".join(pin_mismatches())
        values["OFFLINE_MODELS"] = int(all(
            check(lambda name=name: packaged_model(name)) for name in profile_models("offline")))
        values["DATA"] = check(mr.load_idiomem)
        values["GPT2_BPE"] = check(gpt2_tokenizer)
    values["NOTEBOOK_DEPS"] = int(all(importlib.util.find_spec(m) is not None
                                      for m in ("papermill", "nbformat", "ipykernel")))
    for key, value in values.items():
        print(f"{key}={shlex.quote(str(value))}")


if __name__ == "__main__":
    sys.exit(main())
