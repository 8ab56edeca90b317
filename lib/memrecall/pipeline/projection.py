"""The lens results every notebook reads, computed once per model and cached.

``idiom_results`` in notebook 02 and notebook 03 is the same computation, computed once and read
from ``results/<profile>/cache`` the second time. The cache keeps entries
(:mod:`memrecall.cache`); this module decides what to compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import data
from ..analysis import classifier
from ..analysis.memorization import memorization_frame
from ..cache import cached, frame_sha256, result_key
from ..forward import blocks
from ..forward.generate import whole_word_continuation
from ..lenses import Lens, project
from ..models import LM
from ..probes import make_probes
from .runs import Settings

__all__ = [
    "ClassifierResults",
    "cached_project",
    "classifier_results",
    "facts_results",
    "idiom_results",
    "idioms",
    "wiki_results",
    "wiki_texts",
]


def cached_project(lm: LM, probes: pd.DataFrame, cache_dir: str | Path | None,
                   **project_kwargs) -> pd.DataFrame:
    """:func:`memrecall.project` through the cache, keyed by model, probes and parameters.

    A fitted ``lens`` adds its kind and fingerprint to the key; the logit lens adds nothing, so
    its results are the ones every other notebook reads.
    """
    columns = [c for c in ("prompt", "target_token") if c in probes.columns]
    lens_key = project_kwargs["lens"].cache_key() if project_kwargs.get("lens") else {}
    key = result_key(lm, frame_sha256(probes, columns), "project", **lens_key)
    frame = cached(cache_dir, key, lambda: project(lm, probes, **project_kwargs))
    frame.index = probes.index  # Parquet stores no index: rows line up with the probes'
    return frame


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


def memorization_results(lm: LM, run: Settings) -> pd.DataFrame:
    """The memorization split of ``lm`` (notebook 02): idiom results, decoded, whole words.

    :func:`idiom_results` (cached) passed through
    :func:`memrecall.analysis.memorization.memorization_frame`, with the greedy whole-word
    continuation of a causal LM (:func:`memrecall.forward.generate.whole_word_continuation`,
    ``run.batch_size`` or 64 prompts a batch); a masked LM gets none.
    """
    res = idiom_results(lm, run)
    words = None if lm.is_masked else whole_word_continuation(
        lm, res, batch_size=run.batch_size or 64)
    return memorization_frame(res, lm.tokenizer, words)


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


@dataclass(frozen=True)
class ClassifierResults:
    """Table 5 for one model.

    Attributes:
        table: :func:`memrecall.analysis.classifier_table` (the rows of ``classifier.csv``:
            ``model, features, accuracy_mean, accuracy_sd, protocol, roc_auc_mean, roc_auc_sd,
            n_splits``).
        splits: :func:`memrecall.analysis.classifier_splits`, the per-split scores the table
            summarises (``model, protocol, features, split, accuracy, roc_auc, n_train,
            n_test``), what :func:`memrecall.analysis.classifier_above_chance` and
            :func:`memrecall.analysis.classifier_intermediate_layers` read.
    """

    table: pd.DataFrame
    splits: pd.DataFrame


def classifier_results(lm: LM, idiom_res: pd.DataFrame, run: Settings) -> ClassifierResults:
    """Table 5 for ``lm``: the classifier on each of its feature sets, both protocols, cached.

    Reads the final hidden states and token ids from the model
    (:func:`memrecall.blocks.model_features`), then scores every feature set on the same 10
    balanced splits, trained class-balanced and as the paper
    (:func:`memrecall.analysis.classifier_splits`). The per-split scores are cached; the
    table is their summary.

    Args:
        lm: the model.
        idiom_res: its :func:`idiom_results`.
        run: the settings (seed, batch size, cache folder).

    Returns:
        The table and the per-split scores (:class:`ClassifierResults`).
    """
    key = result_key(lm, frame_sha256(idiom_res, ["prompt", "target_token", "is_memorized"]),
                     "classifier_splits", seed=run.seed, protocols=list(classifier.PROTOCOLS))

    def compute() -> pd.DataFrame:
        extra = blocks.model_features(lm, idiom_res, run.batch_size)
        sets = classifier.feature_sets(idiom_res, hidden=extra["hidden"],
                                       token_ids=extra["token_ids"], seed=run.seed)
        return classifier.classifier_splits(lm.name, sets, idiom_res["is_memorized"],
                                            seed=run.seed)

    splits = cached(run.cache_dir, key, compute)
    return ClassifierResults(classifier.classifier_table(splits), splits)
