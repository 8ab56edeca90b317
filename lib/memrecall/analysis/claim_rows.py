"""Each claim of the paper measured on a model's results: rows of ``claims.csv``.

:func:`group_claims` (promotion, boost, first-layer rank; facts), :func:`frequency_claim`,
:func:`clusters_claim`, :func:`classifier_claims`, :func:`knockout_claims`,
:func:`attention_claims`. Each returns :func:`memrecall.analysis.claim_row` dicts; the statistics
come from :mod:`.effects`, :mod:`.knockout_claims` and :mod:`.attention_claims`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .attention_claims import before_vs_after, blocked_part, group_contrast, source_contrast
from .claims import CLAIMS, claim_row
from .classifier import classifier_above_chance, classifier_intermediate_layers
from .clusters import cluster_labels, curve_gains
from .effects import (
    N_BOOT,
    cliffs_delta,
    correlation,
    no_effect,
    percentile_interval,
    ratio_of_means,
)
from .frequency import token_word, word_frequencies
from .knockout_claims import depth_slope_stat, group_difference, layer1_vs_other_layers
from .projection import per_example_table, stack

__all__ = ["attention_claims", "classifier_claims", "clusters_claim", "frequency_claim",
           "group_claims", "knockout_claims"]


_GROUP_CLAIMS = (
    ("promotion_vs_nonmemorized", "promotion_layer", "memorized", "non-memorized"),
    ("promotion_vs_wikipedia", "promotion_layer", "memorized", "wikipedia"),
    ("boost_vs_nonmemorized", "confidence_boost", "memorized", "non-memorized"),
    ("boost_vs_wikipedia", "confidence_boost", "memorized", "wikipedia"),
    ("facts_promotion", "promotion_layer", "facts: memorized", "facts: non-memorized"),
    ("facts_boost", "confidence_boost", "facts: memorized", "facts: non-memorized"),
)


def group_claims(model: str, labelled: pd.DataFrame, population: str, lens: str = "logit",
                 seed: int = 0) -> list[dict]:
    """The two-step claims whose groups ``labelled`` holds, and the first-layer rank claim.

    Args:
        model: the model's name.
        labelled: :func:`memrecall.analysis.label_groups` output (idioms of ``population``,
            Wikipedia and/or facts), read through ``lens``.
        population: what the idioms are (:data:`POPULATIONS`).
        lens: ``logit``, ``shortcut`` or ``tuned``.
        seed: seeds the bootstraps.

    Returns:
        :func:`claim_row` dicts (claims whose two groups are both present).
    """
    table = per_example_table(labelled)
    groups = set(table["group"])
    rows = []
    for claim_id, measure, a, b in _GROUP_CLAIMS:
        if {a, b} <= groups:
            stat = cliffs_delta(table.loc[table["group"] == a, measure],
                                table.loc[table["group"] == b, measure], seed=seed)
            rows.append(claim_row(claim_id, model, population, lens, stat))
    if {"memorized", "non-memorized"} <= groups:
        first = stack(labelled["pred_rank"])[:, 0]
        group = labelled["group"].to_numpy()
        stat = ratio_of_means(first[group == "memorized"], first[group == "non-memorized"],
                              seed=seed)
        rows.append(claim_row("first_layer_rank", model, population, lens, stat))
    return rows


def frequency_claim(model: str, labelled: pd.DataFrame, tokenizer: Any,
                    population: str) -> dict:
    """``frequency``: Pearson r of first-layer rank vs the predicted word's frequency.

    On every prediction of ``labelled`` (the idioms of ``population`` and the Wikipedia
    prompts: the population the paper's n implies, :data:`CLAIMS`), tokens without a word
    left out (:func:`memrecall.analysis.token_word`). The Spearman rho goes into ``statistic``.
    """
    words = [token_word(tokenizer, t) for t in labelled["pred_token"]]
    freqs = word_frequencies(words)
    first = stack(labelled["pred_rank"])[:, 0]
    stat = correlation(first, freqs)
    rho = correlation(first, freqs, "spearman")["value"]
    sources = "+".join(sorted(set(labelled["source"]))) if "source" in labelled else "all"
    stat["statistic"] = (f"{CLAIMS['frequency'].statistic}; rows: {sources}; Spearman rho = "
                         f"{rho:+.2f}")
    return claim_row("frequency", model, population, "logit", stat)


def clusters_claim(model: str, idiom_res: pd.DataFrame, population: str, seed: int = 0,
                   n_boot: int = N_BOOT) -> dict:
    """``clusters_boost``: % of memorized idioms in clusters whose mean curve gains confidence.

    k-means clusters of the memorized idioms of ``idiom_res`` (:func:`cluster_labels`, seeded);
    each cluster judged by :func:`curve_gains` on its mean curve; the interval resamples the
    memorized idioms (labels kept) and judges the resampled clusters' mean curves again.
    """
    memorized = idiom_res[idiom_res["is_memorized"].astype(bool)].reset_index(drop=True)
    if len(memorized) < 2:
        return claim_row("clusters_boost", model, population, "logit", no_effect(len(memorized)))
    labels = cluster_labels(memorized, seed=seed)
    ranks, probs = stack(memorized["pred_rank"]), stack(memorized["pred_prob"])

    def share(index: np.ndarray) -> float:
        gained = 0
        for c in np.unique(labels[index]):
            members = index[labels[index] == c]
            gains = curve_gains(ranks[members].mean(0), probs[members].mean(0))["gain"] > 0
            gained += len(members) * gains
        return 100 * gained / len(index)

    rng = np.random.default_rng(seed)
    boots = np.array([share(rng.integers(0, len(memorized), len(memorized)))
                      for _ in range(n_boot)])
    lo, hi = percentile_interval(boots)
    stat = {"value": share(np.arange(len(memorized))), "ci_low": lo, "ci_high": hi,
            "p_value": np.nan, "n": len(memorized)}
    return claim_row("clusters_boost", model, population, "logit", stat)


def knockout_claims(model: str, detail: pd.DataFrame, n_layers: int, population: str,
                    k: int | None = None, seed: int = 0) -> list[dict]:
    """The knockout claims on a per-probe sweep (memorized probes against the paper's reading).

    Args:
        model: the model's name.
        detail: the per-probe sweep (groups memorized, non-memorized, Wikipedia).
        n_layers: the model's layers.
        population: the idioms the probes were drawn from.
        k: the dominant neurons per layer (needed when the sweep has several).
        seed: seeds the bootstraps.
    """
    kw = {"k": k, "seed": seed}
    stats = {
        "knockout_layer1_nondominant": layer1_vs_other_layers(detail, "non_dominant", **kw),
        "knockout_layer1_dominant": layer1_vs_other_layers(detail, "dominant", **kw),
        "knockout_specific": group_difference(detail, "non_dominant", **kw),
        "knockout_falls_early": depth_slope_stat(detail, n_layers, "early", **kw),
        "knockout_flat_late": depth_slope_stat(detail, n_layers, "late", **kw),
    }
    statistic = {claim: CLAIMS[claim].statistic for claim in stats}
    wiki = group_difference(detail, "non_dominant", b="wikipedia", **kw)
    if np.isfinite(wiki["value"]):
        statistic["knockout_specific"] += (
            f"; memorized minus Wikipedia: {wiki['value']:+.0f} [{wiki['ci_low']:+.0f}, "
            f"{wiki['ci_high']:+.0f}]")
    return [claim_row(claim, model, population, "logit", {**stat, "statistic": statistic[claim]})
            for claim, stat in stats.items()]


def attention_claims(model: str, detail: pd.DataFrame, window: int, promotion: pd.Series,
                     population: str, seed: int = 0) -> list[dict]:
    """The attention-edge claims on a per-probe attention sweep (:mod:`.attention_claims`).

    Args:
        model: the model's name.
        detail: the per-probe sweep (groups memorized, non-memorized, Wikipedia).
        window: the window size the claims read (the one nearest 20% of the depth).
        promotion: per probe (index = ``probe``), its 0-based promotion layer.
        population: the idioms the probes were drawn from.
        seed: seeds the bootstraps.
    """
    stats = {
        "attention_content_before_promotion": blocked_part(detail, window, promotion,
                                                           seed=seed),
        "attention_content_before_vs_after": before_vs_after(detail, window, promotion,
                                                             seed=seed),
        "attention_content_vs_nonmemorized": group_contrast(detail, window, seed=seed),
        "attention_content_vs_function": source_contrast(detail, window, seed=seed),
    }
    statistic = {claim: f"{CLAIMS[claim].statistic}; {window}-layer windows" for claim in stats}
    wiki = group_contrast(detail, window, b="wikipedia", seed=seed)
    if np.isfinite(wiki["value"]):
        statistic["attention_content_vs_nonmemorized"] += (
            f"; memorized minus Wikipedia: {wiki['value']:+.1f} [{wiki['ci_low']:+.1f}, "
            f"{wiki['ci_high']:+.1f}]")
    return [claim_row(claim, model, population, "logit", {**stat, "statistic": statistic[claim]})
            for claim, stat in stats.items()]


def classifier_claims(model: str, splits: pd.DataFrame, population: str) -> list[dict]:
    """``classifier_above_chance`` (ROC AUC) and ``classifier_intermediate_layers`` (accuracy).

    Args:
        model: the model's name.
        splits: its per-split scores (:func:`memrecall.analysis.classifier_splits`; the
            class-balanced protocol is read).
        population: the idioms the classifier was trained and tested on.
    """
    return [claim_row("classifier_above_chance", model, population, "logit",
                      classifier_above_chance(splits)),
            claim_row("classifier_intermediate_layers", model, population, "logit",
                      classifier_intermediate_layers(splits))]
