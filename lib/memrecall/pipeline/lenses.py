"""Notebook 06 per model: the logit lens against the fitted lenses, each fitted once and cached.

The linear shortcut and the tuned lens (started from the shortcut) are fitted on WikiText-2
``valid.txt`` with the profile's budget (``run.lens``) and evaluated on ``test.txt`` (what the
convergence rule, :func:`memrecall.analysis.lens_admission`, judges).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from .. import lenses
from .._io import WRITE_ERRORS, CacheWarning, error_text
from ..analysis import projection
from ..cache import cache_path, cached, result_key, verify_entry, write_sidecar
from ..lenses import Lens, LogitLens
from ..models import LM
from ..profiles import LensBudget
from ..profiles import profile as get_profile
from .projection import idiom_results, wiki_results
from .runs import Settings

__all__ = ["LENS_CHOICES", "cached_lens", "fitted_lenses", "lens_kl", "lens_results", "lens_text",
           "read_lens", "stored_lenses"]

LENS_CHOICES = tuple(reading.label for reading in lenses.READINGS)
"""The readings notebook 06 compares, in its order (the first is the paper's)."""


def lens_text(lm: LM, run: Settings, split: str,
              budget: LensBudget | None = None) -> lenses.TextChunks:
    """The WikiText-2 chunks of ``run``'s lens budget (or of ``budget``).

    ``valid``: the fit text and, after it, the tuned lens's monitor text (split them with
    ``.split(budget.monitor_tokens)``); ``test``: the held-out evaluation.
    """
    budget = budget or run.lens
    n_tokens = (budget.fit_tokens + budget.monitor_tokens if split == "valid"
                else budget.eval_tokens)
    return lenses.wikitext_chunks(lm, split, n_tokens=n_tokens, chunk_len=budget.chunk_len,
                                  seed=run.seed)


class _LensKeys:
    """The cache keys of one model's fitted lenses under one budget (the texts they need)."""

    def __init__(self, lm: LM, run: Settings, budget: LensBudget) -> None:
        self.lm, self.run, self.budget = lm, run, budget
        self.fit_text, self.monitor_text = lens_text(lm, run, "valid", budget).split(
            budget.monitor_tokens)
        self.shortcut = result_key(lm, self.fit_text.sha256, "lens_linear_shortcut",
                                   **self.fit_text.provenance(), ridge=budget.ridge)
        self.tuned_params = dict(steps=budget.tuned_steps, lr=budget.tuned_lr,
                                 rows_per_step=budget.tuned_rows,
                                 vocab_sample=budget.vocab_sample,
                                 monitor_every=budget.monitor_every)

    def tuned(self, shortcut: Lens) -> dict:
        """The tuned lens's key: it starts from ``shortcut``, so its fingerprint is in it."""
        return result_key(self.lm, self.fit_text.sha256, "lens_tuned_lens",
                          **self.fit_text.provenance(), monitor=self.monitor_text.provenance(),
                          init=shortcut.fingerprint(), **self.tuned_params)


def fitted_lenses(lm: LM, run: Settings) -> dict[str, Lens]:
    """The readings of :data:`LENS_CHOICES` for ``lm``: the logit lens and both fitted lenses.

    The linear shortcut is fitted on ``valid.txt`` (``run.lens.fit_tokens``); the tuned lens
    starts from it and is trained on the same text, its checkpoints judged on the monitor text
    held out after it. Each is read from the cache when one was fitted for this model,
    revision, text (its sha256, token count, chunk length, seed), hyperparameters (for the tuned
    lens also the shortcut it started from) and code fingerprint; else it is fitted and saved.
    """
    keys = _LensKeys(lm, run, run.lens)
    shortcut = cached_lens(run.cache_dir, keys.shortcut, lm, lambda: (
        lenses.LinearShortcut.fit(lm, keys.fit_text, ridge=run.lens.ridge)))
    return {
        LogitLens.label: LogitLens(),
        lenses.LinearShortcut.label: shortcut,
        lenses.TunedLens.label: cached_lens(run.cache_dir, keys.tuned(shortcut), lm, lambda: (
            lenses.TunedLens.fit(lm, keys.fit_text, init=shortcut, monitor=keys.monitor_text,
                                 **keys.tuned_params, seed=run.seed))),
    }


def stored_lenses(lm: LM, run: Settings) -> dict[str, Lens]:
    """The fitted lenses of ``lm`` already in ``run``'s cache, read without fitting anything.

    What notebook 06 fitted (:func:`fitted_lenses`) for this model, revision and code: first
    under ``run``'s lens budget, else under its profile's own (so a quick run finds the lenses
    of a full one). The logit lens is not included (every reader offers it).

    Returns:
        lens name -> lens (``linear shortcut``, ``tuned lens``), in :data:`LENS_CHOICES` order;
        empty when none is cached (or the cache cannot vouch for its files).
    """
    found: dict[str, Lens] = {}
    budgets = dict.fromkeys([run.lens, get_profile(run.profile).lens])
    for budget in budgets:
        keys = _LensKeys(lm, run, budget)
        shortcut = read_lens(run.cache_dir, keys.shortcut, lm)
        if shortcut is None:
            continue
        found = {lenses.LinearShortcut.label: shortcut}
        tuned = read_lens(run.cache_dir, keys.tuned(shortcut), lm)
        if tuned is not None:
            return found | {lenses.TunedLens.label: tuned}
    return found


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
        reading name -> :func:`memrecall.analysis.label_groups` frame; the logit lens's is the one
        of notebook 03 (read from the same cache).
    """
    return {name: projection.label_groups(idiom_results(lm, run, lens=reader),
                                     wiki_results(lm, run, lens=reader))
            for name, reader in readers.items()}


def cached_lens(cache_dir: str | Path | None, key: Mapping, lm: LM,
                fit: Callable[[], lenses.AffineLens]) -> lenses.AffineLens:
    """Return the fitted lens for ``key``, fitting and saving it first if needed.

    It lives beside the cached frames as ``<name>.safetensors`` and ``<name>.json`` (its
    metadata: model, revision, code fingerprint, data and its sha256, seed, hyperparameters),
    under the name :func:`cache_path` gives ``key``, with ``<name>.check.json`` recording the
    key and both files' sha256. It is read back only when that record vouches for both files
    (:func:`verify_entry`), and then checked against ``lm``; otherwise it is fitted again, with
    a :class:`CacheWarning` saying why. A cache folder that cannot be written keeps the fitted
    lens (with a warning). ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return fit()
    stem, files, record = _lens_entry(cache_dir, key)
    lens, reason = _read_entry(stem, key, lm)
    if lens is not None:
        return lens
    if any(f.exists() for f in files):
        warnings.warn(f"refitting {stem.name}: {reason}", CacheWarning, stacklevel=2)
    fitted = fit()
    try:
        fitted.save(stem)
        write_sidecar(record, key, files)
    except WRITE_ERRORS as error:  # read-only, or a full disk (OSError or SafetensorError)
        warnings.warn(f"results cache {cache_dir} cannot be written ({error_text(error)}); "
                      "continuing without it: this lens will be fitted again next time",
                      CacheWarning, stacklevel=2)
    return fitted


def read_lens(cache_dir: str | Path | None, key: Mapping, lm: LM) -> lenses.AffineLens | None:
    """The lens cached under ``key`` (checked against ``lm``), or None: nothing is fitted.

    None when there is no such entry, or its record does not vouch for its files, or they
    cannot be read or are for another model (what :func:`cached_lens` would refit).
    """
    if cache_dir is None:
        return None
    stem, _, _ = _lens_entry(cache_dir, key)
    return _read_entry(stem, key, lm)[0]


def _lens_entry(cache_dir: str | Path, key: Mapping) -> tuple[Path, list[Path], Path]:
    """A cached lens's stem, its two files and the record that vouches for them."""
    stem = cache_path(cache_dir, key).with_suffix("")
    return stem, list(lenses.lens_files(stem)), stem.with_name(stem.name + ".check.json")


def _read_entry(stem: Path, key: Mapping, lm: LM | None) -> tuple[lenses.AffineLens | None, str]:
    """The lens at ``stem`` if its record vouches for it and it reads, else why not."""
    files = list(lenses.lens_files(stem))
    reason = verify_entry(files[0], key, files=files,
                          sidecar=stem.with_name(stem.name + ".check.json"))
    if reason is None:
        try:
            return lenses.load_lens(stem, lm), ""
        except Exception as error:  # as written, yet unreadable or for another model: refit
            reason = f"it cannot be read ({type(error).__name__}: {error})"
    return None, reason
