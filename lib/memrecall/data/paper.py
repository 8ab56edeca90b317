"""The paper's own numbers, shipped with the package, as tidy DataFrames.

Source: Haviv, Cohen, Gidron, Schuster, Goldberg, Geva. *Understanding Transformer Memorization
Recall Through Idioms.* EACL 2023, pp. 248-264 (arXiv 2210.03588v3). Tables 1, 3, 4 and 5 are
the numbers printed in the paper; Figures 2, 3, 4, 5, 8 and 9 were **digitized** from the vector
graphics of the paper's PDF (line plots essentially exact; heatmap cells read from their fill
colour, within 1/256 of the colour bar), so curve values are not the authors' raw numbers.

Conventions of every frame here: ``layer`` is 1-based (layer ``i`` is the hidden state after
block ``i``), ``depth`` is ``layer / n_layers`` (the same relative depth as
``stats.normalised_depth``), rank 0 is top-1, curves are *arithmetic* means over examples.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

__all__ = [
    "CITATION",
    "FACT_GROUPS",
    "PAPER_MODELS",
    "TABLE5_FEATURES",
    "clusters",
    "facts_curves",
    "figure2",
    "knockouts",
    "n_layers",
    "reference",
    "table3",
    "table4",
    "table5",
]

CITATION = (
    "Haviv, Cohen, Gidron, Schuster, Goldberg, Geva. Understanding Transformer Memorization "
    "Recall Through Idioms. EACL 2023, pp. 248-264; arXiv 2210.03588v3."
)

REFERENCE_FILE = "haviv2023_reference.json"

PAPER_MODELS = ("gpt2-medium", "gpt2-large", "bert-base-uncased", "bert-large-uncased")

# Table 5's feature sets, named and ordered as in the paper.
TABLE5_FEATURES = (
    "probability (all layers)",
    "ranks (all layers)",
    "probability + ranks",
    "ranks layers 1-12 + probability",
    "probability last layer",
    "final hidden state",
    "token ids",
    "random",
)

# The paper's Figure 4 groups, under the names our frames use (``stats.FACT_GROUPS`` + wikipedia).
FACT_GROUPS = {
    "memorized facts": "facts: memorized",
    "non-memorized facts": "facts: non-memorized",
    "wikipedia": "wikipedia",
}

_KNOCKOUT_FIGURES = {
    "figure3": "figure3_knockouts",
    "figure8": "figure8_target_rank_change",
    "figure9": "figure9_target_prob_change_pct",
}


@cache
def _raw() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(REFERENCE_FILE).read_text("utf-8")
    return json.loads(text)


def reference() -> dict[str, Any]:
    """The whole reference file (a fresh copy: callers may modify it)."""
    return copy.deepcopy(_raw())


def n_layers(model: str) -> int:
    """Number of layers of one of the paper's four models (Table 6)."""
    return int(_raw()["models"][model]["layers"])


def _layers(model: str, count: int) -> pd.DataFrame:
    total = n_layers(model)
    if count != total:
        raise ValueError(f"{model}: {count} digitized layers, expected {total}")
    layer = pd.RangeIndex(1, total + 1)
    return pd.DataFrame({"layer": layer, "depth": layer / total})


def table3() -> pd.DataFrame:
    """Table 3: memorized idioms per model, of the paper's 814.

    Returns:
        Columns ``model, n_layers, memorized, non_memorized, n, memorized_pct``.
    """
    rows = [{"model": m, "n_layers": n_layers(m), **v}
            for m, v in _raw()["table3_memorized"].items()]
    out = pd.DataFrame(rows)
    out["n"] = out["memorized"] + out["non_memorized"]
    return out[["model", "n_layers", "memorized", "non_memorized", "n", "memorized_pct"]]


def table4() -> pd.DataFrame:
    """Table 4: Pearson r (and p) between the prediction's first-layer rank and its frequency.

    Returns:
        Columns ``model, r, p``.
    """
    pairs = _raw()["table4_first_layer_rank_vs_frequency"]["r_p"]
    return pd.DataFrame([{"model": m, "r": r, "p": p} for m, (r, p) in pairs.items()])


def table5() -> pd.DataFrame:
    """Table 5: classifier accuracy (%), memorized vs non-memorized, per feature set and model.

    Returns:
        Columns ``model, features, accuracy_mean, accuracy_sd`` (the columns of our
        ``classifier.csv``), features in :data:`TABLE5_FEATURES` order.
    """
    features = _raw()["table5_classifier"]["features"]
    if tuple(features) != TABLE5_FEATURES:
        raise ValueError(f"unexpected Table 5 feature sets: {list(features)}")
    rows = [
        {"model": model, "features": name, "accuracy_mean": mean, "accuracy_sd": sd}
        for name, per_model in features.items()
        for model, (mean, sd) in per_model.items()
    ]
    return pd.DataFrame(rows)


def _curves(model: str, group: str, curve: dict[str, Any]) -> pd.DataFrame:
    frame = _layers(model, len(curve["rank"]))
    frame.insert(0, "group", group)
    frame.insert(0, "model", model)
    frame["rank"] = curve["rank"]
    frame["prob"] = curve["prob"]
    for measure in ("rank", "prob"):
        band = curve.get(f"{measure}_ci95")
        if band is not None:
            frame[f"{measure}_lo"], frame[f"{measure}_hi"] = band
    return frame


def figure2() -> pd.DataFrame:
    """Figure 2 (digitized): mean rank and probability of the final prediction per layer.

    Returns:
        One row per model, group and layer: ``model, group, layer, depth, rank, prob, rank_lo,
        rank_hi, prob_lo, prob_hi`` (the drawn 95% bootstrap bands). Groups are named as in
        ``stats.GROUPS``: ``memorized``, ``non-memorized``, ``wikipedia``.
    """
    curves = _raw()["figure2_layerwise"]["curves"]
    frames = [_curves(m, g, c) for m, groups in curves.items() for g, c in groups.items()]
    return pd.concat(frames, ignore_index=True)


def facts_curves() -> pd.DataFrame:
    """Figure 4 (digitized): GPT-2 medium on LAMA-UHN facts, per layer.

    Returns:
        ``model, group, layer, depth, rank, prob``; groups renamed to ours
        (:data:`FACT_GROUPS`: ``facts: memorized``, ``facts: non-memorized``, ``wikipedia``).
    """
    curves = _raw()["facts"]["figure4_layerwise"]
    frames = [_curves("gpt2-medium", FACT_GROUPS[g], c) for g, c in curves.items()]
    return pd.concat(frames, ignore_index=True)


def clusters() -> pd.DataFrame:
    """Figure 5 (digitized): k-means (k=7) clusters of GPT-2 medium's memorized idioms.

    Returns:
        ``model, cluster, size, layer, depth, rank, prob`` (mean curves per cluster; the
        labelled sizes sum to 343, not the 364 memorized idioms of Table 3).
    """
    frames = []
    for label, curve in _raw()["figure5_clusters"]["clusters"].items():
        name, size = label.split(" (")
        frame = _curves("gpt2-medium", "memorized", curve).drop(columns="group")
        frame.insert(1, "cluster", int(name.split()[-1]))
        frame.insert(2, "size", int(size.rstrip(")")))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def knockouts(figure: str = "figure3") -> pd.DataFrame:
    """Figures 3, 8 or 9 (digitized): GPT-2 medium FFN knockouts in windows of 1-3 layers.

    Args:
        figure: ``figure3`` (% of 100 memorized idioms whose prediction changes),
            ``figure8`` (mean increase of the target's rank) or ``figure9`` (mean decrease of
            the target's probability, in %).

    Returns:
        ``kind, start, end, window, value``; ``kind`` is ``dominant`` (the 10 sub-updates with
        the largest |m|·‖v‖ zeroed) or ``non-dominant`` (all but those 10); layers 1-based.
    """
    if figure not in _KNOCKOUT_FIGURES:
        raise ValueError(f"figure must be one of {sorted(_KNOCKOUT_FIGURES)}, got {figure!r}")
    block = _raw()[_KNOCKOUT_FIGURES[figure]]
    rows = []
    for kind in ("dominant", "non-dominant"):
        for window, value in block[kind].items():
            start, end = (int(x) for x in window.split("-"))
            rows.append({"kind": kind, "start": start, "end": end,
                         "window": end - start + 1, "value": float(value)})
    return pd.DataFrame(rows)
