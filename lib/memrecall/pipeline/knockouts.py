"""Notebook 05 per model: the probe groups, the knockout sweep through the cache, its tables."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .. import interventions
from ..analysis import knockouts as knockout_stats
from ..analysis.projection import GROUPS, promotion_layer
from ..cache import cached, frame_sha256, result_key
from ..interventions import SweepConfig
from ..models import LM
from ..report import knockouts as knockout_report
from ..report.comparison_file import merge_comparison
from ..report.tables import to_display_layer
from .projection import idiom_results, wiki_results
from .runs import Settings

__all__ = [
    "KnockoutResults",
    "cached_knockout_sweep",
    "intervention_probes",
    "knockout_config",
    "knockout_norm_comparison",
    "knockout_results",
    "knockout_runtime",
    "write_knockout_outputs",
]


def cached_knockout_sweep(lm: LM, probes: pd.DataFrame, cache_dir: str | Path | None,
                          config: SweepConfig | None = None, *, batch_size: int | None = None,
                          progress: bool | None = None, resume: bool = True,
                          **fields) -> pd.DataFrame:
    """:func:`memrecall.interventions.knockout_sweep` through the results cache.

    The key is the model, the probes (prompt, target token, group) and every
    :class:`~memrecall.interventions.SweepConfig` field that changes this model's result
    (``frozen_norm`` only for a model with a norm after its MLP:
    :meth:`~memrecall.interventions.SweepConfig.key`), plus the code fingerprint of
    :func:`memrecall.cache.result_key`; ``batch_size``, ``progress`` and ``resume`` change
    speed, not numbers, and stay out of it. ``fields`` replace those of ``config``.
    """
    config = replace(config or SweepConfig(), **fields)
    columns = [c for c in ("prompt", "target_token", config.group_column) if c in probes.columns]
    key = result_key(lm, frame_sha256(probes, columns), "knockout_sweep", **config.key(lm))
    return cached(cache_dir, key, lambda: interventions.knockout_sweep(
        lm, probes, config, batch_size=batch_size, progress=progress, resume=resume))


def intervention_probes(lm: LM, run: Settings) -> pd.DataFrame:
    """The probes of notebooks 05 and 07: up to ``run.n_knockout`` per group, seeded.

    Memorized and non-memorized idioms of ``run.population`` and Wikipedia prompts
    (:func:`memrecall.analysis.knockout_probe_groups` on the cached lens results), each with
    its 0-based ``promotion_layer`` under the logit lens.
    """
    def promoted(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(promotion_layer=promotion_layer(frame["pred_rank"]))

    return knockout_stats.knockout_probe_groups(
        promoted(run.idioms_of(idiom_results(lm, run))), promoted(wiki_results(lm, run)),
        run.n_knockout, seed=run.seed)


def knockout_config(run: Settings, frozen_norm: bool = True) -> SweepConfig:
    """The sweep of notebook 05 for ``run``: the profile's k and windows, every control.

    The profiles hold the paper's design (k = 10, windows of 1-3 layers); rows are per probe.
    ``frozen_norm=False`` recomputes Gemma 2/3's post-MLP norm on the knocked-out output
    instead of freezing it at the clean scale (:class:`~memrecall.interventions.SweepConfig`);
    for other models the two configurations give (and cache) the same sweep.
    """
    return SweepConfig(ks=run.knockout_ks, max_window=run.knockout_max_window,
                       controls=interventions.CONTROLS, frozen_norm=frozen_norm, seed=run.seed,
                       per_probe=True)


@dataclass
class KnockoutResults:
    """What notebook 05 shows for one model.

    Attributes:
        model: the registry name.
        n_layers: its layers.
        probes: the probe groups (:func:`memrecall.analysis.knockout_probe_groups`).
        detail: the per-probe sweep.
        summary: :func:`memrecall.interventions.summarize_sweep` of ``detail``.
        table: :func:`memrecall.analysis.knockout_table` of ``detail`` (bootstrap
            intervals).
        runtime: one row of the runtime table (layers, neurons, probes, configurations,
            rows, seconds; near 0 seconds when the sweep was read from the cache).
        example_group: the group of the examples (``memorized``, or ``non-memorized`` when the
            model memorizes none of the sampled idioms).
        examples: :func:`memrecall.interventions.sub_update_examples` of a few probes of
            ``example_group`` (None when that group is empty).
        example_ranks: per example (columns ``prompt -> prediction``), the best rank of the
            prediction over each layer's top-10 sub-updates, by layer (1-based index).
        config: the sweep.
    """

    model: str
    n_layers: int
    probes: pd.DataFrame
    detail: pd.DataFrame
    summary: pd.DataFrame
    table: pd.DataFrame
    runtime: dict
    example_group: str
    examples: pd.DataFrame | None
    example_ranks: pd.DataFrame | None
    config: SweepConfig

    def describe(self) -> list[str]:
        """What a run log says about this model: group sizes, configurations and time."""
        sizes = self.probes["group"].value_counts().reindex(GROUPS, fill_value=0)
        lines = [f"{self.model}: {self.runtime['layers']} layers; probes "
                 + ", ".join(f"{group} {count}" for group, count in sizes.items())
                 + f"; {self.runtime['configurations']} configurations x probes = "
                 f"{self.runtime['rows (configuration x probe)']} rows in "
                 f"{self.runtime['seconds']:.1f} s (near 0: read from the cache)"]
        if self.example_group != "memorized":
            lines.append(f"    note: {self.model} memorizes none of the sampled idioms; the "
                         "memorized group is absent and section 5 shows non-memorized idioms "
                         "instead")
        return lines


def knockout_results(lm: LM, run: Settings, config: SweepConfig | None = None,
                     n_examples: int = 3) -> KnockoutResults:
    """Notebook 05 for one model: probe groups, the cached sweep, its table, sub-update examples.

    Reads the lens results of the idioms (those of ``run.population``) and the Wikipedia texts
    (cached), draws up to ``run.n_knockout`` probes per group (seeded,
    :func:`intervention_probes`), runs the sweep
    (cached), and reads the top sub-updates of ``n_examples`` memorized idioms (non-memorized
    ones if there are none) at four layers spread over the depth.

    Args:
        lm: the loaded model.
        run: the settings.
        config: the sweep (default :func:`knockout_config`); must be per-probe.
        n_examples: idioms whose top sub-updates are read.
    """
    config = config or knockout_config(run)
    if not config.per_probe:
        raise ValueError("knockout_results needs a per-probe sweep (SweepConfig(per_probe=True))")
    probes = intervention_probes(lm, run)
    d_ff = interventions.mlp_width(lm)
    n_configs = len(interventions.knockout_configs(lm.n_layers, d_ff, config.ks,
                                                   config.max_window, config.controls))
    started = time.perf_counter()
    detail = cached_knockout_sweep(lm, probes, run.cache_dir, config, batch_size=run.batch_size)
    seconds = time.perf_counter() - started
    runtime = {"model": lm.name, "layers": lm.n_layers, "MLP neurons per layer": d_ff,
               "probes": len(probes), "configurations": n_configs,
               "rows (configuration x probe)": len(probes) * n_configs, "seconds": seconds}

    group = knockout_report.reference_group([probes["group"]])
    chosen = probes[probes["group"] == group].head(n_examples)
    examples = ranks = None
    if len(chosen):
        layers = sorted({round(x * (lm.n_layers - 1) / 3) for x in range(4)})
        examples = interventions.sub_update_examples(lm, chosen, layers, n_neurons=3,
                                                     n_tokens=6, batch_size=run.batch_size)
        best = interventions.prediction_rank_in_value_vectors(lm, chosen, k=10,
                                                              batch_size=run.batch_size)
        ranks = pd.DataFrame(
            {f"{row.prompt} → {lm.tokenizer.decode([row.pred_token])!r}":
             row.best_sub_update_pred_rank for row in best.itertuples()},
            index=pd.Index(to_display_layer(pd.RangeIndex(lm.n_layers)), name="layer"))
    return KnockoutResults(model=lm.name, n_layers=lm.n_layers, probes=probes, detail=detail,
                           summary=interventions.summarize_sweep(detail),
                           table=knockout_stats.knockout_table(detail), runtime=runtime,
                           example_group=group, examples=examples, example_ranks=ranks,
                           config=config)


def knockout_norm_comparison(frozen: KnockoutResults, free: KnockoutResults,
                             value: str = "changed_pct") -> pd.DataFrame:
    """One model's knockouts with its post-MLP norm frozen and recomputed, side by side.

    For Gemma 2/3 (a norm after the MLP): ``frozen`` from :func:`knockout_results` with
    :func:`knockout_config` (``frozen_norm=True``, the default), ``free`` with
    ``knockout_config(run, frozen_norm=False)``, on the same probes.

    Args:
        frozen: the results with the norm frozen at the clean scale.
        free: the results with the norm recomputed.
        value: the read-out (:data:`memrecall.analysis.READOUTS`; default % changed).

    Returns:
        :func:`memrecall.analysis.norm_comparison` of the two tables (per group and
        configuration: ``{value}_frozen``, ``{value}_free``, their ``_lo`` / ``_hi``
        intervals, ``difference``) with **1-based** ``start_layer`` / ``end_layer``: layer 1
        alone is the row of ``start_layer == 1`` and ``window == 1``.

    Raises:
        ValueError: the results are of different models, or not frozen / recomputed as named.
    """
    if frozen.model != free.model:
        raise ValueError(f"results of two models: {frozen.model} and {free.model}")
    if not frozen.config.frozen_norm or free.config.frozen_norm:
        raise ValueError("pass the results with frozen_norm=True first, then frozen_norm=False")
    out = knockout_stats.norm_comparison(frozen.table, free.table, value)
    return out.assign(start_layer=to_display_layer(out["start_layer"]),
                      end_layer=to_display_layer(out["end_layer"]))


def knockout_runtime(results: dict[str, KnockoutResults]) -> pd.DataFrame:
    """One row per model: layers, neurons, probes, configurations, rows, seconds, rows/s."""
    runtime = pd.DataFrame([res.runtime for res in results.values()]).set_index("model")
    runtime["rows per second"] = runtime["rows (configuration x probe)"] / runtime["seconds"]
    return runtime


def write_knockout_outputs(run: Settings,
                           results: dict[str, KnockoutResults]) -> pd.DataFrame:
    """Write ``knockouts_<model>.csv`` per model and the ``figure3``/``figure9`` rows of all.

    ``results/<profile>/knockouts_<model>.csv``:
    :func:`memrecall.report.knockouts_csv`; ``paper_comparison.csv``: the ``figure3``
    rows (:func:`memrecall.report.figure3_rows`) of all models at once, merged
    (:func:`memrecall.report.merge_comparison`: other analyses' rows stay).

    Returns:
        The ``figure3`` and ``figure9`` rows written.
    """
    frames = []
    for name, res in results.items():
        knockout_report.write_knockouts_csv(
            res.summary, run.results_dir / f"knockouts_{run.slug(name)}.csv")
        frames.append(knockout_report.figure3_rows(name, res.table, res.detail, res.n_layers,
                                                   population=run.population))
        frames.append(knockout_report.figure9_rows(name, res.table,
                                                   population=run.population))
    rows = pd.concat(frames, ignore_index=True)
    if len(rows):
        merge_comparison(run.results_dir / "paper_comparison.csv", rows)
    return rows
