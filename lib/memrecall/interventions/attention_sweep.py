"""The attention-edge sweep: every window of layers, source set and probe, batched.

For each (configuration, probe) row, the edges from the probe's prediction position to its source
set (:func:`~memrecall.interventions.attention.source_positions`) are blocked in a window of
consecutive layers (:func:`~memrecall.interventions.attention.blocked_edges`). As in the FFN
sweep (:mod:`.sweep`), one clean forward per batch of probes is recorded
(:class:`~memrecall.interventions.resume.CleanRun`); every row joins at its window's first block
on its probe's recorded input, many rows per forward, and only the prediction position goes
through the head (:class:`~memrecall.interventions.rows.HeadQueue`): the new prediction and the
probability of the clean one.

Windows (Geva et al. 2023): one layer, and the window nearest 20% of the depth
(:func:`attention_windows`), at every start layer where it fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..forward.batching import activation_token_budget
from ..models import LM
from ..runmode import progress_bar
from .attention import SOURCE_SETS, blocked_edges, source_positions
from .resume import (
    CleanRun,
    ProbeBatch,
    fit_copies,
    forward,
    map_batches,
    naming_prompts,
    probe_batches,
    probe_frame,
)
from .rows import HEAD_ROWS, HeadQueue, staggered_rows

__all__ = ["ATTENTION_KEYS", "AttentionSweepConfig", "attention_configs", "attention_sweep",
           "attention_windows"]

ATTENTION_KEYS = ["sources", "window", "start_layer", "end_layer"]
"""The columns that name one configuration (layers 0-based, inclusive)."""


def attention_windows(n_layers: int) -> tuple[int, ...]:
    """One layer, and the window nearest 20% of the depth (Geva et al. 2023), without repeats."""
    return tuple(dict.fromkeys((1, max(1, round(0.2 * n_layers)))))


@dataclass(frozen=True)
class AttentionSweepConfig:
    """What an attention sweep computes (every field is part of its cache key).

    Attributes:
        windows: window sizes in layers; None for :func:`attention_windows` of the model.
        sources: source sets, any of :data:`~memrecall.interventions.attention.SOURCE_SETS`.
        group_column: if the probes have this column, it is carried into the rows.
    """

    windows: tuple[int, ...] | None = None
    sources: tuple[str, ...] = SOURCE_SETS
    group_column: str = "group"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.windows is not None:
            object.__setattr__(self, "windows", tuple(int(w) for w in self.windows))
        unknown = set(self.sources) - set(SOURCE_SETS)
        if unknown:
            raise ValueError(f"unknown source set(s) {sorted(unknown)}; choose from "
                             f"{list(SOURCE_SETS)}")

    def key(self) -> dict:
        """The fields as plain JSON values, for a cache key."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in asdict(self).items()}


def attention_configs(n_layers: int, windows: Sequence[int],
                      sources: Sequence[str] = SOURCE_SETS) -> pd.DataFrame:
    """Every (source set, window size, start layer) that fits: :data:`ATTENTION_KEYS` columns."""
    if any(w < 1 or w > n_layers for w in windows):
        raise ValueError(f"window sizes must be within 1..{n_layers}, got {list(windows)}")
    rows = [(name, size, start, start + size - 1) for name in sources for size in windows
            for start in range(n_layers - size + 1)]
    return pd.DataFrame(rows, columns=ATTENTION_KEYS)


@dataclass
class _Plan:
    """The configurations on the device, and every probe's source positions as masks."""

    start: torch.Tensor  # (n_configs,)
    end: torch.Tensor  # (n_configs,)
    source: torch.Tensor  # (n_configs,) index into the source sets
    masks: torch.Tensor  # (n_sets, n_probes, longest) bool: the keys of each set and probe

    def edges(self, layer: int, n_layers: int, configs: torch.Tensor, probes: torch.Tensor,
              keys: int) -> torch.Tensor:
        """``(rows, n_layers, keys)`` bool: each row's blocked keys, in ``layer`` only."""
        edges = torch.zeros(len(configs), n_layers, keys, dtype=torch.bool,
                            device=configs.device)
        inside = (self.start[configs] <= layer) & (self.end[configs] >= layer)
        edges[:, layer] = self.masks[self.source[configs], probes, :keys] & inside[:, None]
        return edges


def _source_masks(lm: LM, prompts: Sequence[str], sources: Sequence[str],
                  device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """``(n_sets, n_probes, longest)`` bool masks of the source positions, and their counts."""
    found = source_positions(lm, prompts)
    longest = max(len(row) for row in found["previous"]) + 1  # the longest prompt, in tokens
    masks = torch.zeros(len(sources), len(prompts), longest, dtype=torch.bool)
    for i, name in enumerate(sources):
        for probe, positions in enumerate(found[name]):
            masks[i, probe, positions] = True
    return masks.to(device), masks.sum(2).numpy()


def _staggered(lm: LM, plan: _Plan, clean: CleanRun, max_rows: int, head: HeadQueue) -> int:
    """Every (configuration, probe) row of one probe batch, in one pass over the blocks.

    :func:`~memrecall.interventions.rows.staggered_rows`, each row blocking its edges where its
    window covers the block. Rows whose source set is empty for their probe are not run (they
    keep the clean numbers). Returns the number of rows run.
    """
    batch, keys = clean.batch, clean.batch.input_ids.shape[1]

    def blocks_something(configs: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
        return plan.masks[plan.source[configs], batch.rows[probes]].any(1)

    def run_block(layer: int, configs: torch.Tensor, probes: torch.Tensor,
                  hidden: torch.Tensor) -> torch.Tensor:
        edges = plan.edges(layer, lm.n_layers, configs, batch.rows[probes], keys)
        if not edges.any():  # every window here is over, or yet to come: the clean block
            return clean.run_block(layer, hidden, probes)
        with blocked_edges(lm, edges, batch.positions[probes]):
            return clean.run_block(layer, hidden, probes)

    return staggered_rows(lm, clean, plan.start, max_rows, head, run_block, blocks_something)


def attention_sweep(lm: LM, probes: pd.DataFrame | Sequence[str],
                    config: AttentionSweepConfig | None = None, *,
                    batch_size: int | None = None, max_rows: int | None = None,
                    progress: bool | None = None, **fields) -> pd.DataFrame:
    """Block the attention edges to each source set in windows of layers; watch the prediction.

    Args:
        lm: a decoder.
        probes: probe frame (``prompt``; optional group column) or plain prompts.
        config: what to compute (default :class:`AttentionSweepConfig()`).
        batch_size: at most this many probes per clean forward.
        max_rows: at most this many (configuration, probe) rows per forward.
        progress: a progress bar over rows (default: more than 5000 of them).
        **fields: :class:`AttentionSweepConfig` fields replacing those of ``config``.

    Returns:
        One row per (configuration, probe): ``probe`` (row of ``probes``), [group,]
        :data:`ATTENTION_KEYS` (layers 0-based), ``n_sources`` (positions blocked; a row with 0
        is not run and keeps the clean numbers), ``base_pred_token, pred_token, changed,
        base_pred_prob, pred_prob`` (the clean prediction's probability before and after).
    """
    config = replace(config or AttentionSweepConfig(), **fields)
    frame = probe_frame(probes)
    prompts = frame["prompt"].astype(str).tolist()
    with naming_prompts(prompts), torch.no_grad():
        return _sweep(lm, frame, prompts, config, batch_size, max_rows, progress)


def _sweep(lm: LM, frame: pd.DataFrame, prompts: list[str], config: AttentionSweepConfig,
           batch_size: int | None, max_rows: int | None,
           progress: bool | None) -> pd.DataFrame:
    """:func:`attention_sweep` on a checked probe frame."""
    n, device = len(frame), lm.device
    windows = config.windows or attention_windows(lm.n_layers)
    configs = attention_configs(lm.n_layers, windows, config.sources)
    masks, counts = _source_masks(lm, prompts, config.sources, device)
    plan = _Plan(start=torch.tensor(configs["start_layer"].to_numpy(), device=device),
                 end=torch.tensor(configs["end_layer"].to_numpy(), device=device),
                 source=torch.tensor([config.sources.index(s) for s in configs["sources"]],
                                     device=device),
                 masks=masks)
    batches = probe_batches(lm, prompts, batch_size, trace=True, overhead_tokens=1)
    base_pred = torch.zeros(n, dtype=torch.long, device=device)
    base_prob = torch.zeros(n, device=device)
    for batch in batches:
        scan = lm.head.scan(forward(lm, batch)[0],
                            torch.empty(len(batch.rows), 0, dtype=torch.long, device=device),
                            argmax=True)
        base_pred[batch.rows] = scan.pred
        base_prob[batch.rows] = torch.exp(scan.best - scan.log_norm)
    n_configs = len(configs)
    # rows that block nothing are never run: they keep the clean prediction and probability
    out = (base_pred.expand(n_configs, n).clone(),
           torch.zeros(n_configs, n, 1, dtype=torch.long, device=device),
           base_prob[None, :, None].expand(n_configs, n, 1).clone())
    head = HeadQueue(lm, base_pred[:, None], out,
                     HEAD_ROWS if device.type == "cpu" else n_configs * n)
    show = progress if progress is not None else n_configs * n > 5000
    bar = progress_bar(total=n_configs * n, desc=f"attention edges {lm.name} ({n_configs} "
                       "configs)", unit="row", unit_scale=True, disable=not show)
    budget = activation_token_budget(lm)

    def run_batch(batch: ProbeBatch) -> None:
        clean = CleanRun(lm, batch)
        _staggered(lm, plan, clean, max_rows or max(1, budget // batch.input_ids.shape[1]),
                   head)
        bar.update(len(batch.rows) * n_configs)

    with bar:
        map_batches(lm, fit_copies(lm, batches, n_configs), run_batch)
        head.flush()
    pred_after, _, prob_after = out
    detail = configs.loc[configs.index.repeat(n)].reset_index(drop=True)
    detail.insert(0, "probe", np.tile(np.arange(n), n_configs))
    if config.group_column in frame.columns:
        detail.insert(1, config.group_column,
                      np.tile(frame[config.group_column].to_numpy(), n_configs))
    source_index = plan.source.cpu().numpy().repeat(n)
    detail["n_sources"] = counts[source_index, detail["probe"].to_numpy()]
    base = np.tile(base_pred.cpu().numpy(), n_configs)
    detail["base_pred_token"] = base
    detail["pred_token"] = pred_after.reshape(-1).cpu().numpy()
    detail["changed"] = detail["pred_token"].to_numpy() != base
    detail["base_pred_prob"] = np.tile(base_prob.cpu().numpy(), n_configs)
    detail["pred_prob"] = prob_after.reshape(-1).cpu().numpy()
    return detail
