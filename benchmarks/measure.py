"""Measuring tools for `make bench`: timing, the machine's matmul rate, memory, FLOP counts."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

from memrecall.models import LM


def synchronize() -> None:
    """Wait for queued CUDA work (a no-op without CUDA), so wall-clock times are whole."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], reps: int) -> tuple[list[float], object]:
    """Wall-clock seconds of ``reps`` calls of ``fn``, and the last call's result."""
    seconds, result = [], None
    for _ in range(reps):
        synchronize()
        start = time.perf_counter()
        result = fn()
        synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def summary(seconds: list[float], n_texts: int, scale: float = 1.0) -> dict:
    """Min / median seconds (times ``scale``, to extrapolate a subset) and texts per second."""
    best, median = min(seconds) * scale, statistics.median(seconds) * scale
    return {"seconds": [round(s, 4) for s in seconds], "scale": scale,
            "min_s": round(best, 3), "median_s": round(median, 3),
            "texts_per_s": round(n_texts / best, 2)}


def matmul_rate(size: int = 4096, reps: int = 5, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> dict:
    """GFLOP/s of a large square matmul on ``device`` in ``dtype``: best and median of ``reps``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    seconds, _ = timed(lambda: a @ b, reps)
    rates = [2 * size**3 / s / 1e9 for s in seconds]
    return {"size": size, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
            "best_gflops": round(max(rates), 1),
            "median_gflops": round(statistics.median(rates), 1)}


def rss() -> int:
    """Resident set size of this process, bytes."""
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak RSS inside a ``with`` block, and its excess over the RSS on entry (with CUDA in use,
    also the peak CUDA allocation: :attr:`cuda_extra`).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux) on entry and reads
    ``VmHWM`` on exit; a sampling thread (every 5 ms) is the fallback elsewhere.
    """

    def __init__(self) -> None:
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._kernel = False

    def __enter__(self) -> PeakMemory:
        self.cuda_before = self.cuda_peak = 0
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.cuda_before = torch.cuda.memory_allocated()
        self.before = self.peak = rss()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._kernel = True
        except OSError:
            self._kernel = False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.cuda_before or (torch.cuda.is_available() and torch.cuda.is_initialized()):
            synchronize()
            self.cuda_peak = torch.cuda.max_memory_allocated()
        if self._kernel:
            status = Path("/proc/self/status").read_text()
            line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
            self.peak = max(self.peak, int(line.split()[1]) * 1024)

    @property
    def extra(self) -> int:
        return self.peak - self.before

    @property
    def cuda_extra(self) -> int:
        """Peak CUDA memory allocated inside the block beyond what was allocated on entry."""
        return self.cuda_peak - self.cuda_before


def block_params(lm: LM) -> int:
    """Parameters of the transformer blocks (what every token multiplies through)."""
    return sum(p.numel() for p in lm.arch.blocks.parameters())


def flop_counts(lm: LM, ids: list[list[int]]) -> dict:
    """FLOPs the task needs at the least: forward on the real tokens, the lens matmuls.

    * forward: ``2 x block parameters x real tokens`` (no padding, no LM head);
    * attention: ``4 x n_layers x sum(length^2) x attention width`` (scores and mixing);
    * lens: ``2 x n_layers x n_texts x d x vocab`` (every layer's state at the prediction
      position through the unembedding).
    """
    config = lm.model.config.get_text_config()
    d = lm.arch.unembed_weight.shape[1]
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    head_dim = getattr(config, "head_dim", None) or d // heads
    real = sum(map(len, ids))
    forward = 2 * block_params(lm) * real
    attention = 4 * lm.n_layers * sum(len(r) ** 2 for r in ids) * heads * head_dim
    lens = 2 * lm.n_layers * len(ids) * d * lm.vocab_size
    return {"real_tokens": real, "block_params": block_params(lm), "forward": forward,
            "attention": attention, "lens": lens, "total": forward + attention + lens}


def environment() -> dict:
    """What the numbers depend on: threads, CPU, load from other processes."""
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip()
                   for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cpu": cpu,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def knockout_flops(lm: LM, ids: list[list[int]], starts: list[int]) -> dict:
    """FLOPs a knockout sweep needs at the least: each (configuration, probe) row runs the blocks
    from its window's first layer over the probe's real tokens, then the head at the prediction
    position only.

    Args:
        lm: the model.
        ids: token ids of each probe (real tokens, no padding).
        starts: the 0-based first layer of every configuration.

    Returns:
        ``blocks`` (``2 x block parameters / n_layers x blocks run x real tokens``),
        ``attention`` (``4 x blocks run x length^2 x attention width``), ``head``
        (``2 x d x vocab`` per row), ``total``, ``rows`` and ``block_tokens``.
    """
    config = lm.model.config.get_text_config()
    d = lm.arch.unembed_weight.shape[1]
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    head_dim = getattr(config, "head_dim", None) or d // heads
    per_block = block_params(lm) / lm.n_layers
    blocks_run = sum(lm.n_layers - s for s in starts)  # per probe
    tokens = sum(map(len, ids))
    squares = sum(len(r) ** 2 for r in ids)
    rows = len(starts) * len(ids)
    blocks = 2 * per_block * blocks_run * tokens
    attention = 4 * blocks_run * squares * heads * head_dim
    head = 2 * d * lm.vocab_size * rows
    return {"rows": rows, "block_tokens": blocks_run * tokens, "blocks": blocks,
            "attention": attention, "head": head, "total": blocks + attention + head}
