"""The knockout sweep of Haviv et al. (2023, section 5), batched.

One clean forward per batch of probes scores every neuron of every layer once
(:func:`~memrecall.interventions.neurons.score_batches`); then each configuration (control, k,
window of layers) is one forward per batch with per-probe neuron sets, resumed at the window's
first block from the recorded clean run (:class:`~memrecall.interventions.resume.CleanRun`).
Only the last block's output at the prediction positions is read through the head (never the LM
head over every position).

Controls:

* ``"top"``: the k highest-scoring neurons of each layer in the window (per probe);
* ``"all_but_top"``: every neuron *except* those k (the authors' control);
* ``"random"``: k uniformly random neurons per probe and layer (ours: same number of zeroed
  neurons as ``"top"``, so a fair control; :func:`~memrecall.interventions.neurons.random_neurons`:
  the same neurons of a layer in every window containing it, nested across k). Random neurons
  may, by chance, include top ones (1000 of 3072 neurons is a third of a GPT-2 medium layer).

Groups (memorized / non-memorized idioms, Wikipedia sentences): put them in one probe frame with a
``group`` column; the sweep runs them together (mixed batches) and summarises per group.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..models import LM
from ..runmode import progress_bar
from .knockout import Scope, knockout
from .neurons import mlp_width, prediction_and_target, random_neurons, score_batches
from .resume import CleanRun, ProbeBatch, map_batches, probe_batches, probe_frame, target_tokens

__all__ = ["CONTROLS", "DEFAULT_KS", "SWEEP_KEYS", "SweepConfig", "knockout_configs",
           "knockout_sweep", "summarize_sweep"]

CONTROLS: tuple[str, ...] = ("top", "all_but_top", "random")
DEFAULT_KS: tuple[int, ...] = (1, 10, 100, 1000)
DEFAULT_MAX_WINDOW = 5
SWEEP_KEYS = ["control", "k_requested", "k", "start_layer", "end_layer", "window"]


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep computes: every field changes the result (and is its cache key).

    How it runs (batch size, progress bar, resuming forwards) is not part of it: those change
    speed and memory, never the numbers.

    Attributes:
        ks: neurons per layer; capped at the MLP width (duplicates after capping run once).
        max_window: windows of 1..``max_window`` consecutive layers from every start layer; an
            int, or ``{control: int}`` (missing controls: 5).
        controls: any of ``"top"``, ``"all_but_top"``, ``"random"``.
        scope: ``"all"`` positions (the authors') or ``"prediction"`` position only.
        seed: seeds the random control.
        per_probe: one row per (probe, configuration) instead of the summary.
        group_column: if the probes have this column, it is carried along and summaries are
            per group.
    """

    ks: tuple[int, ...] = DEFAULT_KS
    max_window: int | Mapping[str, int] = DEFAULT_MAX_WINDOW
    controls: tuple[str, ...] = CONTROLS
    scope: Scope = "all"
    seed: int = 0
    per_probe: bool = False
    group_column: str = "group"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        object.__setattr__(self, "controls", tuple(self.controls))
        if isinstance(self.max_window, Mapping):
            object.__setattr__(self, "max_window", dict(self.max_window))
        for control in self.controls:
            if control not in CONTROLS:
                raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")
        if self.scope not in ("all", "prediction"):
            raise ValueError(f"scope must be 'all' or 'prediction', not {self.scope!r}")

    def __hash__(self) -> int:
        return hash(json.dumps(self.key(), sort_keys=True))

    def key(self) -> dict:
        """The fields as plain JSON values (lists and dicts), for a cache key."""
        return {name: (list(value) if isinstance(value, tuple)
                       else dict(value) if isinstance(value, Mapping) else value)
                for name, value in asdict(self).items()}


def _windows(n_layers: int, max_window: int) -> list[tuple[int, int]]:
    return [(start, start + size - 1) for start in range(n_layers)
            for size in range(1, max_window + 1) if start + size - 1 < n_layers]


def knockout_configs(n_layers: int, d_ff: int, ks: Sequence[int] = DEFAULT_KS,
                     max_window: int | Mapping[str, int] = DEFAULT_MAX_WINDOW,
                     controls: Sequence[str] = CONTROLS) -> pd.DataFrame:
    """Every (control, k, window) of a sweep, in the order it runs.

    ``k`` is ``k_requested`` capped at ``d_ff``; requests that cap to the same ``k`` run once.
    ``max_window`` may differ per control (e.g. ``{"all_but_top": 3}``; missing ones: 5).
    Windows are ``[start_layer, end_layer]``, 0-based and inclusive.
    """
    for control in controls:
        if control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}; choose from {CONTROLS}")
    capped: dict[int, int] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        capped.setdefault(min(k, d_ff), k)
    rows = []
    for control in controls:
        widest = (max_window.get(control, DEFAULT_MAX_WINDOW) if isinstance(max_window, Mapping)
                  else max_window)
        for k, requested in capped.items():
            for start, end in _windows(n_layers, widest):
                rows.append((control, requested, k, start, end, end - start + 1))
    return pd.DataFrame(rows, columns=SWEEP_KEYS)


def knockout_sweep(lm: LM, probes: pd.DataFrame | Sequence[str],
                   config: SweepConfig | None = None, *, batch_size: int | None = None,
                   progress: bool | None = None, resume: bool = True,
                   **fields) -> pd.DataFrame:
    """Knock out top-k / all-but-top-k / random-k neurons in windows of layers; measure changes.

    Neurons are ranked once per probe on the clean run; each configuration is then one forward
    per batch, each probe with its own neuron sets.

    Args:
        lm: the model.
        probes: probe frame (``prompt``, ``target_token``; optional group column) or plain
            prompts (no target columns then).
        config: what to compute (default :class:`SweepConfig()`).
        batch_size: at most this many probes per forward (default: the activation budget).
        progress: a progress bar over configurations (default: more than 50 of them).
        resume: resume each knockout forward at the window's first block from a recorded clean
            run (default; about half the work), or run whole forwards (same numbers).
        **fields: :class:`SweepConfig` fields replacing those of ``config``
            (``ks=(10,), max_window=2, ...``).

    Returns:
        The summary (see :func:`summarize_sweep`): one row per ([group,] configuration) with
        ``control, k_requested, k, start_layer, end_layer`` (0-based, inclusive), ``window,
        n_probes, changed_fraction, mean_pred_prob_drop`` and, with targets,
        ``mean_target_prob_drop, mean_base_target_prob``. With ``per_probe``: ``probe`` (row of
        ``probes``), [group,] the configuration, ``base_pred_token, pred_token, changed,
        base_pred_prob, pred_prob`` (of the *base* prediction after the knockout),
        ``pred_prob_drop`` and, with targets, ``target_token, is_memorized, base_target_prob,
        target_prob, target_prob_drop``.
    """
    config = replace(config or SweepConfig(), **fields)
    frame = probe_frame(probes)
    n = len(frame)
    d_ff = mlp_width(lm)
    configs = knockout_configs(lm.n_layers, d_ff, config.ks, config.max_window, config.controls)
    targets = target_tokens(lm, frame)
    batches = probe_batches(lm, frame["prompt"].astype(str).tolist(), batch_size, trace=resume)
    kmax = int(configs["k"].max()) if len(configs) else 1
    base = score_batches(lm, batches, n, targets, kmax)
    random = (random_neurons(n, lm.n_layers, d_ff, kmax, config.seed).to(lm.device)
              if "random" in set(configs["control"]) else None)
    tokens = prediction_and_target(base.pred_token, targets)
    base_probs = torch.stack([base.pred_prob] + ([] if targets is None else [base.target_prob]),
                             1)

    n_configs = len(configs)
    plan = list(configs.itertuples(index=False))
    pred_after = torch.zeros(n_configs, n, dtype=torch.long, device=lm.device)
    probs_after = torch.zeros(n_configs, n, tokens.shape[1], device=lm.device)
    show = progress if progress is not None else n_configs > 50
    bar = progress_bar(total=n_configs * n, desc=f"knockouts {lm.name} ({n_configs} configs)",
                       unit="probe", unit_scale=True, disable=not show)

    def run(batch: ProbeBatch) -> tuple[torch.Tensor, torch.Tensor]:
        clean = CleanRun(lm, batch, resume=resume)
        preds = torch.zeros(n_configs, len(batch.rows), dtype=torch.long, device=lm.device)
        probs = torch.zeros(n_configs, len(batch.rows), tokens.shape[1], device=lm.device)
        done = 0
        try:
            for c, row in enumerate(plan):
                chosen = random if row.control == "random" else base.indices
                neurons = {layer: chosen[batch.rows, layer, :row.k]
                           for layer in range(row.start_layer, row.end_layer + 1)}
                with knockout(lm, neurons, positions=batch.positions, scope=config.scope,
                              complement=row.control == "all_but_top"):
                    normed = clean.forward_from(row.start_layer)
                preds[c], _ = lm.head.predict(normed)
                probs[c] = lm.head.rank_and_prob(normed, tokens[batch.rows])[1]
                bar.update(len(batch.rows))
                done += len(batch.rows)
        except BaseException:
            bar.update(-done)  # an out-of-memory retry redoes this batch in halves
            raise
        return preds, probs

    with torch.no_grad(), bar:
        for batch, (preds, probs) in map_batches(lm, batches, run):
            pred_after[:, batch.rows], probs_after[:, batch.rows] = preds, probs

    detail = configs.loc[configs.index.repeat(n)].reset_index(drop=True)
    detail.insert(0, "probe", np.tile(np.arange(n), n_configs))
    group_column = config.group_column
    if group_column in frame.columns:
        detail.insert(1, group_column, np.tile(frame[group_column].to_numpy(), n_configs))
    base_pred = np.tile(base.pred_token.cpu().numpy(), n_configs)
    base_probs = np.tile(base_probs.cpu().numpy(), (n_configs, 1))
    probs_after = probs_after.reshape(n_configs * n, -1).cpu().numpy()
    detail["base_pred_token"] = base_pred
    detail["pred_token"] = pred_after.reshape(-1).cpu().numpy()
    detail["changed"] = detail["pred_token"].to_numpy() != base_pred
    detail["base_pred_prob"] = base_probs[:, 0]
    detail["pred_prob"] = probs_after[:, 0]
    detail["pred_prob_drop"] = base_probs[:, 0] - probs_after[:, 0]
    if targets is not None:
        target = np.tile(targets.cpu().numpy(), n_configs)
        detail["target_token"] = target
        detail["is_memorized"] = base_pred == target
        detail["base_target_prob"] = base_probs[:, 1]
        detail["target_prob"] = probs_after[:, 1]
        detail["target_prob_drop"] = base_probs[:, 1] - probs_after[:, 1]
    return detail if config.per_probe else summarize_sweep(detail, group_column)


def summarize_sweep(detail: pd.DataFrame, group_column: str | None = "group") -> pd.DataFrame:
    """Aggregate a per-probe sweep over probes, per ([group,] configuration).

    Regroup differently by adding columns to ``detail`` first (e.g. group by ``is_memorized``
    with ``group_column="is_memorized"``).
    """
    keys = ([group_column] if group_column and group_column in detail.columns else []) \
        + SWEEP_KEYS
    aggregations = {"n_probes": ("probe", "size"), "changed_fraction": ("changed", "mean"),
                    "mean_pred_prob_drop": ("pred_prob_drop", "mean")}
    if "target_prob_drop" in detail.columns:
        aggregations["mean_target_prob_drop"] = ("target_prob_drop", "mean")
        aggregations["mean_base_target_prob"] = ("base_target_prob", "mean")
    return detail.groupby(keys, sort=False).agg(**aggregations).reset_index()
