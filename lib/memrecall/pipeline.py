"""The steps every notebook shares: settings per profile, and cached per-model results.

A notebook calls these instead of re-implementing them, so two notebooks never drift apart:
``idiom_results`` in notebook 02 and notebook 03 is the same computation, computed once and
read from ``results/<profile>/cache`` the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

import pandas as pd

from . import data
from ._io import slug
from .models import LM
from .probes import make_probes
from .profiles import Profile
from .profiles import profile as get_profile
from .results import cached_project


@dataclass(frozen=True)
class Settings(Profile):
    """One run: a profile (maybe with overrides), its seed, paths and device.

    The profile's fields (models, sample sizes, knockout grid) come first; ``None`` sizes mean
    "all". ``cache_dir`` holds the cached per-model results (:mod:`memrecall.results`).
    """

    seed: int
    results_dir: Path
    figures_dir: Path
    cache_dir: Path
    device: str | None = None
    batch_size: int | None = None

    @property
    def profile(self) -> str:
        """The profile's name: ``paper``, ``offline`` or ``smoke``."""
        return self.name

    @property
    def is_smoke(self) -> bool:
        """Whether this run uses the tiny random models."""
        return self.profile == "smoke"

    def slug(self, model: str) -> str:
        """``model`` as a flat file-name part: a hub id's ``/`` never makes a sub-folder."""
        return slug(model)

    def title(self, model: str) -> str:
        """A figure title that says honestly what the model is."""
        if self.is_smoke:
            return f"{model} (smoke test: tiny random model)"
        if self.profile == "offline":
            return f"{model} (packaged offline model)"
        return model


INTERACTIVE_DIR = "interactive"
"""Where a JupyterLab session writes by default: ``figures/interactive/<profile>`` and
``results/interactive/<profile>`` (git-ignored), never over the figures and tables of
``make reproduce``."""


def settings(profile: str, models: list[str] | str | None = None, root: str | Path = "..",
             results_dir: str | Path | None = None, figures_dir: str | Path | None = None,
             *, interactive: bool = False, **overrides) -> Settings:
    """Settings for ``profile``; ``overrides`` replace sample sizes, seed, device, batch size.

    The defaults are the profile's (:data:`memrecall.profiles.PROFILES`).

    Args:
        profile: ``paper``, ``offline`` or ``smoke``.
        models: registry names (a list, or a comma-separated string); default: the profile's.
        root: the repository root (notebooks run from ``notebooks/``, hence ``".."``).
        results_dir: default ``<root>/results/<profile>``, or
            ``<root>/results/interactive/<profile>`` when ``interactive``.
        figures_dir: default ``<root>/figures/<profile>``, or
            ``<root>/figures/interactive/<profile>`` when ``interactive``.
        interactive: a JupyterLab session (the notebooks' ``interactive`` parameter; ``make
            reproduce`` passes False): by default its figures and tables go under
            :data:`INTERACTIVE_DIR`, so exploring never rewrites the committed ones. The cache
            is shared either way (``<root>/results/<profile>/cache``, or ``<results_dir>/cache``
            for an explicit ``results_dir``): a session reads what ``make reproduce`` computed.
        **overrides: sample sizes (``n_idioms``...), ``seed``, ``device``, ``batch_size``;
            ``None`` values keep the profile's defaults.
    """
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    root = Path(root)
    defaults = get_profile(profile)
    outputs = Path(INTERACTIVE_DIR, profile) if interactive else Path(profile)
    base = Settings(
        **{f.name: getattr(defaults, f.name) for f in dataclass_fields(Profile)},
        seed=0,
        results_dir=Path(results_dir or root / "results" / outputs),
        figures_dir=Path(figures_dir or root / "figures" / outputs),
        cache_dir=Path(results_dir or root / "results" / profile) / "cache",
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    result = replace(base, models=tuple(models or defaults.models), **overrides)
    result.results_dir.mkdir(parents=True, exist_ok=True)
    result.figures_dir.mkdir(parents=True, exist_ok=True)
    return result


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """All rows, or a seeded sample of ``n`` in original order."""
    if n is None or n >= len(frame):
        return frame.reset_index(drop=True)
    return frame.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def idioms(run: Settings) -> pd.DataFrame:
    """IdioMem (or the profile's sample of it)."""
    return _sample(data.load_idiomem(), run.n_idioms, run.seed)


def idiom_results(lm: LM, run: Settings) -> pd.DataFrame:
    """IdioMem metadata (source, flags) plus the lens results of ``lm``, cached."""
    frame = idioms(run)
    probes = make_probes(frame["idiom"].tolist(), lm)
    res = cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size)
    return pd.concat([frame.drop(columns=["idiom"]), res], axis=1)


def wiki_results(lm: LM, run: Settings) -> pd.DataFrame:
    """Random Wikipedia sentences (the control group) through the lens, cached."""
    sentences = data.load_wiki(n=run.n_wiki, seed=run.seed)
    probes = make_probes(sentences["text"].tolist(), lm)
    return cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size)


def facts_results(lm: LM, run: Settings) -> pd.DataFrame:
    """``known_1000`` facts (prompt, attribute) through the lens, cached."""
    facts = _sample(data.load_facts(), run.n_facts, run.seed)
    probes = make_probes(facts.drop(columns=["text"]), lm)
    return cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size)


# --- knockout sweep ---
# The sweep of notebook 05 through the results cache, and everything the notebook shows per model.
# This section's own imports (all pointing down the stack):
import dataclasses  # noqa: E402
import time  # noqa: E402

from . import interventions, report, stats  # noqa: E402
from .interventions import SweepConfig  # noqa: E402
from .results import cached, frame_sha256, result_key  # noqa: E402


def cached_knockout_sweep(lm: LM, probes: pd.DataFrame, cache_dir: str | Path | None,
                          config: SweepConfig | None = None, *, batch_size: int | None = None,
                          progress: bool | None = None, resume: bool = True,
                          **fields) -> pd.DataFrame:
    """:func:`memrecall.interventions.knockout_sweep` through the results cache.

    The key is the model, the probes (prompt, target token, group) and every
    :class:`~memrecall.interventions.SweepConfig` field (plus the code fingerprint of
    :func:`memrecall.results.result_key`); ``batch_size``, ``progress`` and ``resume`` change
    speed, not numbers, and stay out of it. ``fields`` replace those of ``config``.
    """
    config = dataclasses.replace(config or SweepConfig(), **fields)
    columns = [c for c in ("prompt", "target_token", config.group_column) if c in probes.columns]
    key = result_key(lm, frame_sha256(probes, columns), "knockout_sweep", **config.key())
    return cached(cache_dir, key, lambda: interventions.knockout_sweep(
        lm, probes, config, batch_size=batch_size, progress=progress, resume=resume))


KNOCKOUT_CONTROLS = ("top", "random", "all_but_top")
"""The controls of notebook 05, in its order (top-k, the random control, the authors')."""


def knockout_config(run: Settings) -> SweepConfig:
    """The sweep of notebook 05 for ``run``: its k values and windows, per-probe rows.

    Top-k and random-k neurons run in windows of up to ``run.knockout_max_window`` layers; the
    all-but-top-k control on single layers only (keeping only k neurons in two layers at once
    changes nearly everything).
    """
    widest = run.knockout_max_window
    return SweepConfig(ks=run.knockout_ks, controls=KNOCKOUT_CONTROLS, seed=run.seed,
                       max_window={"top": widest, "random": widest, "all_but_top": 1},
                       per_probe=True)


@dataclasses.dataclass
class KnockoutResults:
    """What notebook 05 shows for one model.

    Attributes:
        model: the registry name.
        probes: the probe groups (:func:`memrecall.stats.knockout_probe_groups`).
        detail: the per-probe sweep.
        summary: :func:`memrecall.interventions.summarize_sweep` of ``detail``.
        runtime: one row of the runtime table (layers, neurons, probes, configurations,
            forwards, seconds; near 0 seconds when the sweep was read from the cache).
        example_group: the group of the examples (``memorized``, or ``non-memorized`` when the
            model memorizes none of the sampled idioms).
        examples: :func:`memrecall.interventions.sub_update_examples` of a few probes of
            ``example_group`` (None when that group is empty).
        example_ranks: per example (columns ``prompt -> prediction``), the best rank of the
            prediction over each layer's top-10 sub-updates, by layer (1-based index).
    """

    model: str
    probes: pd.DataFrame
    detail: pd.DataFrame
    summary: pd.DataFrame
    runtime: dict
    example_group: str
    examples: pd.DataFrame | None
    example_ranks: pd.DataFrame | None

    def describe(self) -> list[str]:
        """What a run log says about this model: group sizes, configurations and time."""
        sizes = self.probes["group"].value_counts().reindex(stats.GROUPS, fill_value=0)
        lines = [f"{self.model}: {self.runtime['layers']} layers; probes "
                 + ", ".join(f"{group} {count}" for group, count in sizes.items())
                 + f"; {self.runtime['configurations']} configurations in "
                 f"{self.runtime['seconds']:.1f} s (near 0: read from the cache)"]
        if self.example_group != "memorized":
            lines.append(f"    note: {self.model} memorizes none of the sampled idioms; the "
                         "memorized group is absent and section 4 shows non-memorized idioms "
                         "instead")
        return lines


def knockout_results(lm: LM, run: Settings, config: SweepConfig | None = None,
                     n_examples: int = 3) -> KnockoutResults:
    """Notebook 05 for one model: probe groups, the cached sweep, sub-update examples.

    Reads the lens results of the idioms and the Wikipedia sentences (cached), draws up to
    ``run.n_knockout`` probes per group (seeded), runs the sweep (cached), and reads the top
    sub-updates of ``n_examples`` memorized idioms (non-memorized ones if there are none) at four
    layers spread over the depth.

    Args:
        lm: the loaded model.
        run: the settings.
        config: the sweep (default :func:`knockout_config`); must be per-probe.
        n_examples: idioms whose top sub-updates are read.
    """
    config = config or knockout_config(run)
    if not config.per_probe:
        raise ValueError("knockout_results needs a per-probe sweep (SweepConfig(per_probe=True))")
    probes = stats.knockout_probe_groups(idiom_results(lm, run), wiki_results(lm, run),
                                         run.n_knockout, seed=run.seed)
    d_ff = interventions.mlp_width(lm)
    n_configs = len(interventions.knockout_configs(lm.n_layers, d_ff, config.ks,
                                                   config.max_window, config.controls))
    started = time.perf_counter()
    detail = cached_knockout_sweep(lm, probes, run.cache_dir, config, batch_size=run.batch_size)
    seconds = time.perf_counter() - started
    runtime = {"model": lm.name, "layers": lm.n_layers, "MLP neurons per layer": d_ff,
               "probes": len(probes), "configurations": n_configs,
               "forwards (probe x configuration)": len(probes) * n_configs, "seconds": seconds}

    group = "memorized" if (probes["group"] == "memorized").any() else "non-memorized"
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
            index=pd.Index(report.to_display_layer(pd.RangeIndex(lm.n_layers)), name="layer"))
    return KnockoutResults(model=lm.name, probes=probes, detail=detail,
                           summary=interventions.summarize_sweep(detail), runtime=runtime,
                           example_group=group, examples=examples, example_ranks=ranks)
