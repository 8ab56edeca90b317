"""Notebook 07 per model: the attention-edge sweep through the cache, its table and claims."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .. import interventions
from ..analysis import attention_table, claim_rows
from ..cache import cached, frame_sha256, result_key
from ..interventions import AttentionSweepConfig
from ..models import LM
from ..report.tables import write_csv
from .claims import write_claims
from .knockouts import intervention_probes
from .runs import Settings

__all__ = ["AttentionResults", "attention_claims", "attention_results", "cached_attention_sweep",
           "write_attention_outputs"]


def cached_attention_sweep(lm: LM, probes: pd.DataFrame, cache_dir: str | Path | None,
                           config: AttentionSweepConfig | None = None, *,
                           batch_size: int | None = None, progress: bool | None = None,
                           **fields) -> pd.DataFrame:
    """:func:`memrecall.interventions.attention_sweep` through the results cache.

    The key is the model, the probes (prompt, target token, group), every
    :class:`~memrecall.interventions.AttentionSweepConfig` field and the code fingerprint;
    ``batch_size`` and ``progress`` change speed, not numbers, and stay out of it.
    """
    config = replace(config or AttentionSweepConfig(), **fields)
    columns = [c for c in ("prompt", "target_token", config.group_column) if c in probes.columns]
    key = result_key(lm, frame_sha256(probes, columns), "attention_sweep", **config.key())
    return cached(cache_dir, key, lambda: interventions.attention_sweep(
        lm, probes, config, batch_size=batch_size, progress=progress))


@dataclass
class AttentionResults:
    """What notebook 07 shows for one model.

    Attributes:
        model: the registry name.
        n_layers: its layers.
        windows: the window sizes swept (one layer, and the one nearest 20% of the depth).
        probes: the probe groups (those of notebook 05, with ``promotion_layer``).
        detail: the per-probe sweep (layers 0-based).
        table: :func:`memrecall.analysis.attention_table` of ``detail`` (layers 1-based; the
            rows of ``attention_<model>.csv``).
        seconds: the sweep's time in this run (near 0 when read from the cache).
    """

    model: str
    n_layers: int
    windows: tuple[int, ...]
    probes: pd.DataFrame
    detail: pd.DataFrame
    table: pd.DataFrame
    seconds: float

    @property
    def claim_window(self) -> int:
        """The window the claims read: the widest swept (nearest 20% of the depth)."""
        return max(self.windows)

    @property
    def promotion(self) -> pd.Series:
        """Per probe (index = ``probe``), its 0-based promotion layer under the logit lens."""
        return self.probes["promotion_layer"].rename_axis("probe")

    def describe(self) -> str:
        """What a run log says about this model: probes, windows, rows and time."""
        sizes = self.probes["group"].value_counts()
        return (f"{self.model}: {self.n_layers} layers; probes "
                + ", ".join(f"{group} {count}" for group, count in sizes.items())
                + f"; windows of {' and '.join(map(str, self.windows))} layers; "
                f"{len(self.detail):,} (configuration, probe) rows in {self.seconds:.1f} s "
                "(near 0: read from the cache)")


def attention_results(lm: LM, run: Settings,
                      config: AttentionSweepConfig | None = None) -> AttentionResults:
    """Notebook 07 for one model: notebook 05's probes, the cached sweep and its table.

    Args:
        lm: the loaded decoder.
        run: the settings (population, probes per group, seed, cache).
        config: the sweep (default: both windows, the four source sets).
    """
    config = config or AttentionSweepConfig()
    probes = intervention_probes(lm, run)
    started = time.perf_counter()
    detail = cached_attention_sweep(lm, probes, run.cache_dir, config, batch_size=run.batch_size)
    seconds = time.perf_counter() - started
    windows = config.windows or interventions.attention_windows(lm.n_layers)
    return AttentionResults(model=lm.name, n_layers=lm.n_layers, windows=tuple(windows),
                            probes=probes, detail=detail, table=attention_table(detail),
                            seconds=seconds)


def write_attention_outputs(run: Settings, results: dict[str, AttentionResults]) -> list[Path]:
    """Write ``results/<profile>/attention_<model>.csv`` per model (exact columns), atomically."""
    return [write_csv(res.table, run.results_dir / f"attention_{run.slug(name)}.csv")
            for name, res in results.items()]


def attention_claims(run: Settings, results: dict[str, AttentionResults]) -> pd.DataFrame:
    """Notebook 07's claims of every model, merged into ``claims.csv``; the rows written."""
    rows = [row for name, res in results.items()
            for row in claim_rows.attention_claims(name, res.detail, res.claim_window,
                                                   res.promotion, run.population,
                                                   seed=run.seed)]
    return write_claims(run, rows)
