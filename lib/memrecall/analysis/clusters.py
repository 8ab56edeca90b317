"""Figure 5 of the paper: k-means clusters of a model's memorized idioms.

The paper clusters GPT-2 medium's memorized idioms (k = 7) on their per-layer probability and
rank of the prediction and finds that every cluster ends above probability 0.5: the two phases
(promotion, then a confidence boost) are not an artefact of averaging different behaviours.
As there, the features are the raw per-layer probabilities and ranks side by side (no scaling, so
the ranks dominate the distances, which is what the paper's clusters, ordered by their early
ranks, show); k-means is seeded. Layers are 0-based here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from .projection import confidence_boost, normalised_depth, promotion_layer, stack

__all__ = ["CLUSTER_SUMMARY_COLUMNS", "K", "cluster_curves", "cluster_gains", "cluster_labels",
           "cluster_memorized", "cluster_summary", "curve_gains", "gaining_share"]

K = 7

CLUSTER_SUMMARY_COLUMNS = ["cluster", "size", "final_prob", "peak_prob", "median_promotion_depth",
                           "mean_boost", "ends_above_half", "shows_boost"]


def cluster_labels(res: pd.DataFrame, k: int = K, seed: int = 0) -> np.ndarray:
    """k-means labels of each row on ``[pred_prob..., pred_rank...]``, clusters by size.

    Args:
        res: projection results of the rows to cluster (e.g. the memorized idioms).
        k: number of clusters (fewer if there are fewer rows).
        seed: k-means seed.

    Returns:
        ``(n,)`` int labels; cluster 0 is the largest (ties: lowest mean first-layer rank).
    """
    probs, ranks = stack(res["pred_prob"]), stack(res["pred_rank"])
    features = np.hstack([probs, ranks]).astype(np.float64)
    k = min(k, len(features))
    raw = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(features)
    order = sorted(range(k), key=lambda c: (-(raw == c).sum(), ranks[raw == c, 0].mean()))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    return relabel[raw]


def cluster_curves(res: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per-cluster arithmetic mean rank and probability per layer.

    Returns:
        ``cluster, size, layer`` (0-based), ``depth, rank, prob``.
    """
    probs, ranks = stack(res["pred_prob"]), stack(res["pred_rank"])
    depth = normalised_depth(probs.shape[1])
    parts = []
    for c in np.unique(labels):
        mask = labels == c
        parts.append(pd.DataFrame({
            "cluster": int(c), "size": int(mask.sum()), "layer": np.arange(len(depth)),
            "depth": depth, "rank": ranks[mask].mean(axis=0), "prob": probs[mask].mean(axis=0),
        }))
    return pd.concat(parts, ignore_index=True)


def cluster_summary(res: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per cluster: size, final probability, promotion and boost (does it show the boost?).

    Per cluster: its size, the mean curve's final and peak probability, the median promotion
    depth (per example: the relative depth from which the prediction stays top-1), the mean
    confidence boost (per example: last-layer probability minus the probability at promotion),
    ``ends_above_half`` (final mean probability > 0.5, the paper's reading of its Figure 5) and
    ``shows_boost`` (mean boost > 0).
    """
    probs, ranks = stack(res["pred_prob"]), stack(res["pred_rank"])
    promotion = promotion_layer(ranks)
    boost = confidence_boost(probs, promotion)
    depth = normalised_depth(probs.shape[1])[promotion]
    rows = []
    for c in np.unique(labels):
        mask = labels == c
        curve = probs[mask].mean(axis=0)
        rows.append({
            "cluster": int(c), "size": int(mask.sum()), "final_prob": float(curve[-1]),
            "peak_prob": float(curve.max()),
            "median_promotion_depth": float(np.median(depth[mask])),
            "mean_boost": float(boost[mask].mean()), "ends_above_half": bool(curve[-1] > 0.5),
            "shows_boost": bool(boost[mask].mean() > 0),
        })
    return pd.DataFrame(rows, columns=CLUSTER_SUMMARY_COLUMNS)


def cluster_memorized(idiom_res: pd.DataFrame, k: int = K,
                      seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 5 for one model: cluster its memorized idioms, then curves and summary.

    Returns:
        ``(curves, summary)``: :func:`cluster_curves` and :func:`cluster_summary` (empty frames
        when fewer than 2 idioms are memorized).
    """
    memorized = idiom_res[idiom_res["is_memorized"].astype(bool)].reset_index(drop=True)
    if len(memorized) < 2:
        return (pd.DataFrame(columns=["cluster", "size", "layer", "depth", "rank", "prob"]),
                pd.DataFrame(columns=CLUSTER_SUMMARY_COLUMNS))
    labels = cluster_labels(memorized, k, seed)
    return cluster_curves(memorized, labels), cluster_summary(memorized, labels)


def curve_gains(mean_rank: np.ndarray, mean_prob: np.ndarray) -> dict:
    """Whether a mean curve gains confidence after its promotion point.

    The rule for Figure 5, the same on our clusters and the paper's digitized ones (which have
    only mean curves): the promotion point is the first layer (0-based) from which the mean rank
    stays below 1; the gain is the final mean probability minus the probability there.

    Returns:
        ``promotion_layer`` (0-based) and ``gain`` (probability).
    """
    below = np.asarray(mean_rank, dtype=np.float64) < 1
    start = len(below) - 1
    while start > 0 and below[start - 1]:
        start -= 1
    probs = np.asarray(mean_prob, dtype=np.float64)
    return {"promotion_layer": start, "gain": float(probs[-1] - probs[start])}


def cluster_gains(curves: pd.DataFrame) -> pd.DataFrame:
    """:func:`curve_gains` of each cluster's mean curve.

    Args:
        curves: one row per (cluster, layer) with ``cluster``, ``size``, ``layer``, ``rank``,
            ``prob`` (:func:`cluster_curves`, or :func:`memrecall.data.paper.clusters`).

    Returns:
        One row per cluster: ``cluster, size, promotion_layer, gain, gains`` (gain > 0).
    """
    rows = []
    for cluster, part in curves.sort_values(["cluster", "layer"]).groupby("cluster"):
        found = curve_gains(part["rank"].to_numpy(), part["prob"].to_numpy())
        rows.append({"cluster": int(cluster), "size": int(part["size"].iloc[0]), **found,
                     "gains": found["gain"] > 0})
    return pd.DataFrame(rows, columns=["cluster", "size", "promotion_layer", "gain", "gains"])


def gaining_share(gains: pd.DataFrame) -> float:
    """% of the clustered idioms that lie in clusters that gain (:func:`cluster_gains`)."""
    return float(100 * gains.loc[gains["gains"], "size"].sum() / gains["size"].sum())
