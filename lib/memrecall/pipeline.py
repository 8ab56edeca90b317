"""The steps every notebook shares: settings per profile, and cached per-model results.

A notebook calls these instead of re-implementing them, so two notebooks never drift apart:
``idiom_results`` in notebook 02 and notebook 03 is the same computation, computed once and
read from ``results/<profile>/cache`` the second time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

import pandas as pd

from . import (
    classifier,
    data,
    hidden,
    interventions,
    knockout_report,
    knockout_stats,
    lenses,
    report,
    stats,
)
from ._io import slug
from .batching import check_batch_size
from .comparison import merge_comparison
from .interventions import SweepConfig
from .lens import Lens, LogitLens
from .models import LM, check_device, load
from .probes import make_probes
from .profiles import Profile
from .profiles import profile as get_profile
from .results import cached, cached_lens, cached_project, frame_sha256, result_key


@dataclass(frozen=True)
class Settings(Profile):
    """One run: a profile (maybe with overrides), its seed, paths, device and dtype.

    The profile's fields (models, sample sizes, knockout grid) come first; ``None`` sizes mean
    "all". ``cache_dir`` holds the cached per-model results (:mod:`memrecall.results`).
    """

    seed: int
    results_dir: Path
    figures_dir: Path
    cache_dir: Path
    device: str | None = None
    batch_size: int | None = None
    dtype: str | None = None

    def load(self, model: str) -> LM:
        """Load ``model`` on this run's device, in its dtype (default float32)."""
        return load(model, device=self.device, dtype=self.dtype)

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
        """A figure title that says honestly what the model is (and its dtype if not float32)."""
        precision = "" if self.dtype in (None, "float32") else f", {self.dtype}"
        if self.is_smoke:
            return f"{model} (smoke test: tiny random model{precision})"
        if self.profile == "offline":
            return f"{model} (packaged offline model{precision})"
        return f"{model} ({self.dtype})" if precision else model

    def describe(self, *details: str) -> str:
        """What a notebook says first: profile and models, ``details``, where outputs go."""
        return "\n".join([f"profile {self.profile}: models {', '.join(self.models)}", *details,
                          f"results -> {self.results_dir}", f"figures -> {self.figures_dir}"])

    def sizes(self) -> str:
        """The idiom and Wikipedia sample sizes, as a notebook's header says them."""
        return f"idioms: {self.n_idioms or 'all'}, Wikipedia texts: {self.n_wiki}"


def table_display(max_colwidth: int = 50) -> None:
    """Set the notebooks' pandas display: 3 decimals, 120 characters, ``max_colwidth`` columns."""
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_colwidth", max_colwidth)


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
        **overrides: sample sizes (``n_idioms``...), ``seed``, ``device``, ``batch_size``,
            ``dtype`` (``"bfloat16"``...); ``None`` values keep the profile's defaults.

    Raises:
        ValueError: a ``batch_size`` that is not a positive whole number.
        DeviceUnavailableError: ``device="cuda"`` on a machine without a CUDA GPU.
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
    if "batch_size" in overrides:
        overrides["batch_size"] = check_batch_size(overrides["batch_size"])
    if "device" in overrides:
        check_device(overrides["device"])
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


def idiom_results(lm: LM, run: Settings, lens: Lens | None = None) -> pd.DataFrame:
    """IdioMem metadata (source, flags) plus the lens results of ``lm``, cached.

    ``lens``: how each layer is read (default the logit lens, :func:`memrecall.project`'s).
    """
    frame = idioms(run)
    probes = make_probes(frame["idiom"].tolist(), lm)
    res = cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size, lens=lens)
    return pd.concat([frame.drop(columns=["idiom"]), res], axis=1)


def wiki_texts(run: Settings) -> pd.DataFrame:
    """The Wikipedia control of ``run``: the paper's, texts whose word counts follow IdioMem's.

    ``run.n_wiki`` texts from ``run.wiki_source`` (:func:`memrecall.data.load_wiki`), seeded.
    """
    return data.load_wiki(n=run.n_wiki, seed=run.seed, source=run.wiki_source)


def wiki_results(lm: LM, run: Settings, lens: Lens | None = None) -> pd.DataFrame:
    """The Wikipedia control (:func:`wiki_texts`) through ``lens`` (default: logit lens), cached."""
    probes = make_probes(wiki_texts(run)["text"].tolist(), lm)
    return cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size, lens=lens)


def facts_results(lm: LM, run: Settings) -> pd.DataFrame:
    """``known_1000`` facts (prompt, attribute) through the lens, cached."""
    facts = _sample(data.load_facts(), run.n_facts, run.seed)
    probes = make_probes(facts.drop(columns=["text"]), lm)
    return cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size)


def classifier_results(lm: LM, idiom_res: pd.DataFrame, run: Settings) -> pd.DataFrame:
    """Table 5 for ``lm``: the paper's classifier on each of its feature sets, cached.

    Reads the final hidden states and token ids from the model
    (:func:`memrecall.hidden.model_features`), then scores every feature set on the same 10
    balanced splits (:func:`memrecall.classifier.classifier_table`).

    Args:
        lm: the model.
        idiom_res: its :func:`idiom_results`.
        run: the settings (seed, batch size, cache folder).

    Returns:
        ``model, features, accuracy_mean, accuracy_sd`` (accuracy in %).
    """
    key = result_key(lm, frame_sha256(idiom_res, ["prompt", "target_token", "is_memorized"]),
                     "classifier", seed=run.seed)

    def compute() -> pd.DataFrame:
        extra = hidden.model_features(lm, idiom_res, run.batch_size)
        sets = classifier.feature_sets(idiom_res, hidden=extra["hidden"],
                                       token_ids=extra["token_ids"], seed=run.seed)
        return classifier.classifier_table(lm.name, sets, idiom_res["is_memorized"],
                                           seed=run.seed)

    return cached(run.cache_dir, key, compute)


# --- knockout sweep ---
# The sweep of notebook 05 through the results cache, and everything the notebook shows per model.


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
    config = replace(config or SweepConfig(), **fields)
    columns = [c for c in ("prompt", "target_token", config.group_column) if c in probes.columns]
    key = result_key(lm, frame_sha256(probes, columns), "knockout_sweep", **config.key())
    return cached(cache_dir, key, lambda: interventions.knockout_sweep(
        lm, probes, config, batch_size=batch_size, progress=progress, resume=resume))


KNOCKOUT_CONTROLS = ("dominant", "non_dominant", "random")
"""The controls of notebook 05, in its order: the paper's two, then our random control."""


def knockout_config(run: Settings) -> SweepConfig:
    """The sweep of notebook 05 for ``run``: the profile's k and windows, every control.

    The profiles hold the paper's design (k = 10, windows of 1-3 layers); rows are per probe.
    """
    return SweepConfig(ks=run.knockout_ks, max_window=run.knockout_max_window,
                       controls=KNOCKOUT_CONTROLS, seed=run.seed, per_probe=True)


@dataclass
class KnockoutResults:
    """What notebook 05 shows for one model.

    Attributes:
        model: the registry name.
        n_layers: its layers.
        probes: the probe groups (:func:`memrecall.stats.knockout_probe_groups`).
        detail: the per-probe sweep.
        summary: :func:`memrecall.interventions.summarize_sweep` of ``detail``.
        table: :func:`memrecall.knockout_stats.knockout_table` of ``detail`` (bootstrap
            intervals).
        runtime: one row of the runtime table (layers, neurons, probes, configurations,
            rows, seconds; near 0 seconds when the sweep was read from the cache).
        example_group: the group of the examples (``memorized``, or ``non-memorized`` when the
            model memorizes none of the sampled idioms).
        examples: :func:`memrecall.interventions.sub_update_examples` of a few probes of
            ``example_group`` (None when that group is empty).
        example_ranks: per example (columns ``prompt -> prediction``), the best rank of the
            prediction over each layer's top-10 sub-updates, by layer (1-based index).
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

    def describe(self) -> list[str]:
        """What a run log says about this model: group sizes, configurations and time."""
        sizes = self.probes["group"].value_counts().reindex(stats.GROUPS, fill_value=0)
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

    Reads the lens results of the idioms and the Wikipedia texts (cached), draws up to
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
            index=pd.Index(report.to_display_layer(pd.RangeIndex(lm.n_layers)), name="layer"))
    return KnockoutResults(model=lm.name, n_layers=lm.n_layers, probes=probes, detail=detail,
                           summary=interventions.summarize_sweep(detail),
                           table=knockout_stats.knockout_table(detail), runtime=runtime,
                           example_group=group, examples=examples, example_ranks=ranks)


def knockout_runtime(results: dict[str, KnockoutResults]) -> pd.DataFrame:
    """One row per model: layers, neurons, probes, configurations, rows, seconds, rows/s."""
    runtime = pd.DataFrame([res.runtime for res in results.values()]).set_index("model")
    runtime["rows per second"] = runtime["rows (configuration x probe)"] / runtime["seconds"]
    return runtime


def write_knockout_outputs(run: Settings,
                           results: dict[str, KnockoutResults]) -> pd.DataFrame:
    """Write ``knockouts_<model>.csv`` per model and the ``figure3`` rows of every model.

    ``results/<profile>/knockouts_<model>.csv``:
    :func:`memrecall.knockout_report.knockouts_csv`; ``paper_comparison.csv``: the ``figure3``
    rows (:func:`memrecall.knockout_report.figure3_rows`) of all models at once, merged
    (:func:`memrecall.comparison.merge_comparison`: other analyses' rows stay).

    Returns:
        The ``figure3`` rows written.
    """
    frames = []
    for name, res in results.items():
        knockout_report.write_knockouts_csv(
            res.summary, run.results_dir / f"knockouts_{run.slug(name)}.csv")
        frames.append(knockout_report.figure3_rows(name, res.table, res.detail, res.n_layers))
    rows = pd.concat(frames, ignore_index=True)
    if len(rows):
        merge_comparison(run.results_dir / "paper_comparison.csv", rows)
    return rows


# --- lens choice ---
# Notebook 06: the logit lens against the linear shortcut and the tuned lens, fitted on
# WikiText-2 valid.txt with the profile's budget (run.lens), evaluated on test.txt.
LENS_CHOICES = ("logit lens", "linear shortcut", "tuned lens")
"""The readings notebook 06 compares, in its order (the first is the paper's)."""


def lens_text(lm: LM, run: Settings, split: str) -> lenses.TextChunks:
    """The WikiText-2 chunks of ``run``'s lens budget: ``valid`` to fit, ``test`` to evaluate."""
    budget = run.lens
    n_tokens = budget.fit_tokens if split == "valid" else budget.eval_tokens
    return lenses.wikitext_chunks(lm, split, n_tokens=n_tokens, chunk_len=budget.chunk_len,
                                  seed=run.seed)


def fitted_lenses(lm: LM, run: Settings) -> dict[str, Lens]:
    """The readings of :data:`LENS_CHOICES` for ``lm``: the logit lens and both fitted lenses.

    Each fitted lens is read from the cache when one was fitted for this model, revision, text
    (its sha256, token count, chunk length, seed), hyperparameters and code fingerprint; else it
    is fitted (on ``valid.txt``, ``run.lens``'s budget) and saved there.
    """
    budget = run.lens
    text = lens_text(lm, run, "valid")
    shortcut_key = result_key(lm, text.sha256, "lens_linear_shortcut", **text.provenance(),
                              ridge=budget.ridge)
    tuned = dict(steps=budget.tuned_steps, lr=budget.tuned_lr, rows_per_step=budget.tuned_rows,
                 vocab_sample=budget.vocab_sample)
    tuned_key = result_key(lm, text.sha256, "lens_tuned_lens", **text.provenance(), **tuned)
    return {
        "logit lens": LogitLens(),
        "linear shortcut": cached_lens(run.cache_dir, shortcut_key, lm, lambda: (
            lenses.LinearShortcut.fit(lm, text, ridge=budget.ridge))),
        "tuned lens": cached_lens(run.cache_dir, tuned_key, lm, lambda: (
            lenses.TunedLens.fit(lm, text, **tuned, seed=run.seed))),
    }


def lens_kl(lm: LM, run: Settings, readers: dict[str, Lens]) -> pd.DataFrame:
    """Held-out KL per layer of each reading, cached, with a ``model`` column.

    :func:`memrecall.lenses.held_out_kl` on the ``test.txt`` chunks of the lens budget.
    """
    text = lens_text(lm, run, "test")
    key = result_key(lm, text.sha256, "lens_kl", **text.provenance(),
                     lenses={name: reader.cache_key() for name, reader in readers.items()})
    frame = cached(run.cache_dir, key, lambda: lenses.held_out_kl(lm, text, readers))
    return frame.assign(model=lm.name)


def lens_results(lm: LM, run: Settings, readers: dict[str, Lens]) -> dict[str, pd.DataFrame]:
    """Idioms and Wikipedia texts under each reading, labelled by group (cached).

    Returns:
        reading name -> :func:`memrecall.stats.label_groups` frame; the logit lens's is the one
        of notebook 03 (read from the same cache).
    """
    return {name: stats.label_groups(idiom_results(lm, run, lens=reader),
                                     wiki_results(lm, run, lens=reader))
            for name, reader in readers.items()}
