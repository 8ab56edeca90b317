"""The steps every notebook shares: settings per profile, and cached per-model results.

A notebook calls these instead of re-implementing them, so two notebooks never drift apart:
``idiom_results`` in notebook 02 and notebook 03 is the same computation, computed once and
read from ``results/<profile>/cache`` the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from . import data
from .models import LM, profile_models
from .probes import make_probes
from .results import cached_project


@dataclass(frozen=True)
class Settings:
    """Sample sizes and paths of one run. ``None`` sizes mean "all"."""

    profile: str
    models: tuple[str, ...]
    n_idioms: int | None
    n_wiki: int
    n_facts: int | None
    n_knockout: int
    knockout_ks: tuple[int, ...]
    knockout_max_window: int
    seed: int
    results_dir: Path
    figures_dir: Path
    device: str | None = None
    batch_size: int | None = None

    @property
    def cache_dir(self) -> Path:
        """Where cached per-model results live."""
        return self.results_dir / "cache"

    @property
    def is_smoke(self) -> bool:
        """Whether this run uses the tiny random models."""
        return self.profile == "smoke"

    def title(self, model: str) -> str:
        """A figure title that says honestly what the model is."""
        if self.is_smoke:
            return f"{model} (smoke test: tiny random model)"
        if self.profile == "offline":
            return f"{model} (packaged offline model)"
        return model


# n_knockout probes per group in the knockout sweep (the authors used 30 memorized idioms). The
# paper's full grid (k up to 1000, windows of 1-5 layers) is for a GPU; on a CPU the offline
# profile keeps two k values and windows of up to 2 layers (about 10 minutes per model).
SAMPLE_SIZES = {
    "paper": dict(n_idioms=None, n_wiki=1000, n_facts=None, n_knockout=30,
                  knockout_ks=(1, 10, 100, 1000), knockout_max_window=5),
    "offline": dict(n_idioms=None, n_wiki=1000, n_facts=None, n_knockout=30,
                    knockout_ks=(10, 100), knockout_max_window=2),
    "smoke": dict(n_idioms=40, n_wiki=24, n_facts=24, n_knockout=6,
                  knockout_ks=(1, 10), knockout_max_window=2),
}


def settings(profile: str, models: list[str] | str | None = None, root: str | Path = "..",
             results_dir: str | Path | None = None, figures_dir: str | Path | None = None,
             **overrides) -> Settings:
    """Settings for ``profile``; ``overrides`` replace sample sizes, seed, device, batch size.

    Args:
        profile: ``paper``, ``offline`` or ``smoke``.
        models: registry names (a list, or a comma-separated string); default: the profile's.
        root: the repository root (notebooks run from ``notebooks/``, hence ``".."``).
        results_dir: default ``<root>/results/<profile>``.
        figures_dir: default ``<root>/figures/<profile>``.
        **overrides: sample sizes (``n_idioms``...), ``seed``, ``device``, ``batch_size``;
            ``None`` values keep the profile's defaults.
    """
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    root = Path(root)
    base = Settings(
        profile=profile,
        models=tuple(models or profile_models(profile)),
        seed=0,
        results_dir=Path(results_dir or root / "results" / profile),
        figures_dir=Path(figures_dir or root / "figures" / profile),
        **SAMPLE_SIZES[profile],
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    result = replace(base, **overrides)
    result.results_dir.mkdir(parents=True, exist_ok=True)
    result.figures_dir.mkdir(parents=True, exist_ok=True)
    return result


def _head(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """All rows, or a seeded sample of ``n`` in original order."""
    if n is None or n >= len(frame):
        return frame.reset_index(drop=True)
    return frame.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def idioms(run: Settings) -> pd.DataFrame:
    """IdioMem (or the profile's sample of it)."""
    return _head(data.load_idiomem(), run.n_idioms, run.seed)


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
    facts = _head(data.load_facts(), run.n_facts, run.seed)
    probes = make_probes(facts.drop(columns=["text"]), lm)
    return cached_project(lm, probes, run.cache_dir, batch_size=run.batch_size)
