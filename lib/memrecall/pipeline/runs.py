"""A run's settings: the profile (maybe with overrides), its seed, paths, device and dtype."""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

import pandas as pd

from .._io import slug
from ..analysis.claims import POPULATIONS, select_population
from ..forward.batching import check_batch_size
from ..models import LM, check_device, load
from ..profiles import Profile, quick_sizes
from ..profiles import profile as get_profile

__all__ = ["INTERACTIVE_DIR", "Settings", "settings", "table_display"]


@dataclass(frozen=True)
class Settings(Profile):
    """One run: a profile (maybe with overrides), its seed, paths, device and dtype.

    The profile's fields (models, sample sizes, knockout grid) come first; ``None`` sizes mean
    "all". ``cache_dir`` holds the cached per-model results (:mod:`memrecall.cache`).
    ``population``: the idioms the headline analyses use, ``filtered`` (the paper's: those that
    pass its filters, ``hard_to_guess``) or ``all`` (:data:`memrecall.analysis.POPULATIONS`).
    """

    seed: int
    results_dir: Path
    figures_dir: Path
    cache_dir: Path
    device: str | None = None
    batch_size: int | None = None
    dtype: str | None = None
    population: str = "filtered"

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
        return (f"idioms: {self.n_idioms or 'all'} (analysed: {self.population_label}), "
                f"Wikipedia texts: {self.n_wiki}")

    @property
    def population_label(self) -> str:
        """The analysed idioms in words, for titles and headers."""
        return POPULATIONS[self.population]

    def idioms_of(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` in this run's population (:func:`select_population`)."""
        return select_population(frame, self.population)


def table_display(max_colwidth: int = 50) -> None:
    """Set the notebooks' pandas display: 3 decimals, 120 characters, ``max_colwidth`` columns."""
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 120)
    pd.set_option("display.max_colwidth", max_colwidth)


INTERACTIVE_DIR = "interactive"
"""Where a JupyterLab session writes by default: ``figures/interactive/<profile>`` and
``results/interactive/<profile>`` (git-ignored), never over the figures and tables of
``make reproduce``."""


def _model_names(models: object) -> list[str] | None:
    """``models`` as a list of names (None: the profile's), or a clear error."""
    if models is None:
        return None
    if isinstance(models, str):
        names = [m.strip() for m in models.split(",") if m.strip()]
        if models.strip() and not names:
            raise ValueError(f"models={models!r} names no model: give comma-separated names, "
                             "or None for the profile's models")
        return names
    if isinstance(models, (list, tuple)) and all(isinstance(m, str) for m in models):
        return list(models)
    raise TypeError(f"models must be a comma-separated string, a list of names or None, not "
                    f"{type(models).__name__} {models!r} (papermill: -p models 'a,b')")


def settings(profile: str, models: list[str] | str | None = None, root: str | Path = "..",
             results_dir: str | Path | None = None, figures_dir: str | Path | None = None,
             *, interactive: bool = False, quick: bool = False, **overrides) -> Settings:
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
        quick: a first look in minutes (the notebooks' ``quick`` parameter): the profile's
            first model unless ``models`` names others, and the small samples and lens budget
            of :data:`memrecall.profiles.QUICK`. Its figures and tables go where an
            interactive session's go, never over the committed ones; the cache is shared
            (its keys hold the probes, so small samples never stand in for full ones).
        **overrides: sample sizes (``n_idioms``...), ``seed``, ``device``, ``batch_size``,
            ``dtype`` (``"bfloat16"``...), ``population`` (``filtered``, the default, or
            ``all``); ``None`` values keep the profile's defaults.

    Raises:
        TypeError: ``models`` that is not a string, a list of strings or None (papermill's
            ``-p models 5`` gives an int).
        ValueError: a ``models`` string that names no model (``","``); a ``batch_size`` that
            is not a positive whole number.
        DeviceUnavailableError: ``device="cuda"`` on a machine without a CUDA GPU.
    """
    models = _model_names(models)
    root = Path(root)
    defaults = get_profile(profile)
    outputs = Path(INTERACTIVE_DIR, profile) if interactive or quick else Path(profile)
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
    if overrides.get("population", "filtered") not in POPULATIONS:
        raise ValueError(f"population={overrides['population']!r}: expected one of "
                         f"{list(POPULATIONS)}")
    if quick:
        overrides = quick_sizes(defaults) | overrides
    default_models = defaults.models[:1] if quick else defaults.models
    result = replace(base, models=tuple(models or default_models), **overrides)
    result.results_dir.mkdir(parents=True, exist_ok=True)
    result.figures_dir.mkdir(parents=True, exist_ok=True)
    return result
