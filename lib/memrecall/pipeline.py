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
from ._io import slug
from .models import LM
from .probes import make_probes
from .profiles import profile as get_profile
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


def settings(profile: str, models: list[str] | str | None = None, root: str | Path = "..",
             results_dir: str | Path | None = None, figures_dir: str | Path | None = None,
             **overrides) -> Settings:
    """Settings for ``profile``; ``overrides`` replace sample sizes, seed, device, batch size.

    The defaults are the profile's (:data:`memrecall.profiles.PROFILES`).

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
    defaults = get_profile(profile)
    base = Settings(
        profile=profile,
        models=tuple(models or defaults.models),
        n_idioms=defaults.n_idioms,
        n_wiki=defaults.n_wiki,
        n_facts=defaults.n_facts,
        n_knockout=defaults.n_knockout,
        knockout_ks=defaults.knockout_ks,
        knockout_max_window=defaults.knockout_max_window,
        seed=0,
        results_dir=Path(results_dir or root / "results" / profile),
        figures_dir=Path(figures_dir or root / "figures" / profile),
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    result = replace(base, **overrides)
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
