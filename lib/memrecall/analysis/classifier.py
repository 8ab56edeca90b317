"""Table 5 of the paper: the per-layer profile telling memorized from non-memorized idioms.

The paper's protocol (Appendix A): scikit-learn's L1-penalised logistic regression with the
liblinear solver and default settings (no feature scaling), 10 random 80/20 train/test splits,
each test set balanced by subsampling the larger class, accuracy in % as mean and standard
deviation over the splits. Its training sets keep the 12-16% share of memorized idioms, so a
weak feature set falls to predicting the majority class (exactly 50% on the balanced test).

Two protocols (:data:`PROTOCOLS`) therefore run on the same splits: ``"balanced"`` (ours, the
default) weights the classes inversely to their frequency in training
(``class_weight="balanced"``), everything else as the paper's; ``"paper"`` is the paper's
exactly. Each split records the accuracy (%) and the ROC AUC (from the decision function, so it
does not depend on the decision threshold). Every feature set of a model is scored on the same
splits, so two feature sets are compared paired by split (:func:`classifier_above_chance`,
:func:`classifier_intermediate_layers`).

The feature sets are named as in the paper's Table 5 (:data:`FEATURE_SETS`). Two of them need
the model itself (the final hidden state, the prompt's token ids): compute them with
:func:`memrecall.forward.model_features` and pass them in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ..data.paper import TABLE5_FEATURES

__all__ = [
    "CLASSIFIER_COLUMNS",
    "FEATURE_SETS",
    "PROTOCOLS",
    "RANK_LAYERS",
    "SPLIT_COLUMNS",
    "balanced_splits",
    "classifier_above_chance",
    "classifier_intermediate_layers",
    "classifier_splits",
    "classifier_table",
    "corrected_resampled_t",
    "feature_sets",
    "l1_logistic",
    "split_scores",
]

FEATURE_SETS = TABLE5_FEATURES

# "ranks layers 1-12 + probability": the paper's name fixes the first 12 layers whatever the
# model's depth (half of GPT-2 medium, a third of GPT-2 large, all of BERT base).
RANK_LAYERS = 12

PROTOCOLS = ("balanced", "paper")

CLASSIFIER_COLUMNS = ["model", "features", "accuracy_mean", "accuracy_sd", "protocol",
                      "roc_auc_mean", "roc_auc_sd", "n_splits"]
SPLIT_COLUMNS = ["model", "protocol", "features", "split", "accuracy", "roc_auc", "n_train",
                 "n_test"]

_METRIC_NAMES = {"accuracy": "accuracy (% points)", "roc_auc": "ROC AUC"}


def l1_logistic(seed: int = 0, protocol: str = "balanced") -> LogisticRegression:
    """The paper's classifier: L1 logistic regression, liblinear, otherwise sklearn defaults.

    Args:
        seed: seeds liblinear's coordinate shuffling, which otherwise draws from numpy's global
            random state (and so moves the accuracies from one run to the next).
        protocol: ``"paper"`` trains unweighted, as the paper; ``"balanced"`` weights each
            class by ``n / (2 * n_class)`` (``class_weight="balanced"``), so the 12-16% of
            memorized idioms weigh as much as the rest.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return LogisticRegression(l1_ratio=1.0, solver="liblinear", random_state=seed,
                              class_weight="balanced" if protocol == "balanced" else None)


def _stack(column: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in column])


def feature_sets(res: pd.DataFrame, *, hidden: np.ndarray | None = None,
                 token_ids: np.ndarray | None = None, rank_layers: int = RANK_LAYERS,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """The paper's feature sets for each row of projection results.

    Args:
        res: :func:`memrecall.project` output (``pred_prob``, ``pred_rank`` per-layer arrays).
        hidden: ``(n, d)`` final hidden states at the prediction position; omitted if None.
        token_ids: ``(n, max_len)`` padded prompt token ids; omitted if None.
        rank_layers: how many first layers' ranks the "ranks layers 1-12" set takes.
        seed: seed of the random features.

    Returns:
        Feature-set name (:data:`FEATURE_SETS`, in order) -> ``(n, k)`` float matrix.
        "random" is one standard-normal feature per layer.
    """
    probs, ranks = _stack(res["pred_prob"]), _stack(res["pred_rank"])
    n, n_layers = probs.shape
    sets = {
        "probability (all layers)": probs,
        "ranks (all layers)": ranks,
        "probability + ranks": np.hstack([probs, ranks]),
        "ranks layers 1-12 + probability": np.hstack([ranks[:, :rank_layers], probs]),
        "probability last layer": probs[:, -1:],
        "final hidden state": hidden,
        "token ids": token_ids,
        "random": np.random.default_rng(seed).standard_normal((n, n_layers)),
    }
    out = {}
    for name in FEATURE_SETS:
        matrix = sets[name]
        if matrix is None:
            continue
        matrix = np.asarray(matrix, dtype=np.float64)
        if len(matrix) != n:
            raise ValueError(f"{name!r}: {len(matrix)} rows, results have {n}")
        out[name] = matrix
    return out


def balanced_splits(y: np.ndarray, n_splits: int = 10, test_size: float = 0.2,
                    seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random train/test splits whose test sets are balanced by subsampling the larger class.

    Args:
        y: ``(n,)`` boolean labels.
        n_splits: number of splits.
        test_size: fraction of the rows drawn for testing before balancing.
        seed: seed of the one generator that draws every split in turn.

    Returns:
        ``n_splits`` pairs of sorted index arrays ``(train, test)``, disjoint; ``test`` has as
        many positives as negatives, ``train`` is the other ``1 - test_size`` of the rows.

    Raises:
        ValueError: fewer than two examples of a class, or a test draw without one class.
    """
    y = np.asarray(y, dtype=bool)
    if min(y.sum(), (~y).sum()) < 2:
        raise ValueError(f"need at least 2 examples of each class, got {y.sum()} and {(~y).sum()}")
    rng = np.random.default_rng(seed)
    n_test = int(np.ceil(test_size * len(y)))
    splits = []
    for _ in range(n_splits):
        order = rng.permutation(len(y))
        test, train = order[:n_test], order[n_test:]
        pos, neg = test[y[test]], test[~y[test]]
        m = min(len(pos), len(neg))
        if m == 0:
            raise ValueError("a test draw holds one class only; too few examples to split")
        pos, neg = (rng.choice(part, m, replace=False) if len(part) > m else part
                    for part in (pos, neg))
        splits.append((np.sort(train), np.sort(np.concatenate([pos, neg]))))
    return splits


def split_scores(features: np.ndarray, y: np.ndarray,
                 splits: list[tuple[np.ndarray, np.ndarray]], seed: int = 0,
                 protocol: str = "balanced") -> pd.DataFrame:
    """Test accuracy and ROC AUC of :func:`l1_logistic` on each split.

    Args:
        features: ``(n, k)`` feature matrix.
        y: ``(n,)`` boolean labels.
        splits: :func:`balanced_splits` output.
        seed: seed of the classifier.
        protocol: ``"balanced"`` or ``"paper"`` (:func:`l1_logistic`).

    Returns:
        One row per split: ``split`` (0-based), ``accuracy`` (%), ``roc_auc`` (fraction, from
        the decision function), ``n_train``, ``n_test``. A training set with one class only
        predicts that class with one score for all (accuracy 50%, ROC AUC 0.5 on a balanced
        test set).
    """
    y = np.asarray(y, dtype=bool)
    rows = []
    for i, (train, test) in enumerate(splits):
        if len(np.unique(y[train])) < 2:
            predicted, score = np.full(len(test), y[train][0]), np.zeros(len(test))
        else:
            with warnings.catch_warnings():  # unscaled ranks, as in the paper
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit = l1_logistic(seed, protocol).fit(features[train], y[train])
            predicted, score = fit.predict(features[test]), fit.decision_function(features[test])
        rows.append({"split": i, "accuracy": 100 * float(np.mean(predicted == y[test])),
                     "roc_auc": float(roc_auc_score(y[test], score)),
                     "n_train": len(train), "n_test": len(test)})
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS[3:])


def classifier_splits(model: str, features: Mapping[str, np.ndarray], y: np.ndarray, *,
                      protocols: Sequence[str] = PROTOCOLS, n_splits: int = 10,
                      test_size: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Every feature set's scores under each protocol, on the same balanced splits.

    Args:
        model: the model's name (first column).
        features: :func:`feature_sets` output.
        y: ``(n,)`` labels, e.g. ``res["is_memorized"]``.
        protocols: training protocols (:data:`PROTOCOLS`).
        n_splits: number of splits (:func:`balanced_splits`).
        test_size: fraction drawn for testing before balancing.
        seed: seed of the splits and of the classifier.

    Returns:
        :data:`SPLIT_COLUMNS`, one row per protocol, feature set and split. When there are too
        few examples of a class to draw the splits (e.g. a model that memorizes nothing), the
        scores and sizes are NaN, so every feature set still has its rows.
    """
    y = np.asarray(y, dtype=bool)
    try:
        splits = balanced_splits(y, n_splits, test_size, seed)
    except ValueError:
        splits = []
    parts = []
    for protocol in protocols:
        for name, matrix in features.items():
            scores = (split_scores(matrix, y, splits, seed, protocol) if splits
                      else pd.DataFrame({"split": range(n_splits)}))
            parts.append(scores.assign(model=model, protocol=protocol, features=name))
    frame = pd.concat(parts, ignore_index=True).reindex(columns=SPLIT_COLUMNS)
    return frame.astype({"accuracy": float, "roc_auc": float})


def classifier_table(splits: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd of the scores over splits, per model, protocol and feature set.

    Args:
        splits: :func:`classifier_splits` rows (one or more models).

    Returns:
        :data:`CLASSIFIER_COLUMNS` (the columns of ``classifier.csv``), in the order of
        ``splits``: accuracy in %, ROC AUC as a fraction, sds the population sd over splits
        (numpy's default, as the paper's "mean ± sd"), ``n_splits`` the splits scored (0, and
        the scores NaN, when none could be drawn).
    """
    keys = ["model", "protocol", "features"]
    grouped = splits.groupby(keys, sort=False)
    table = grouped[["accuracy", "roc_auc"]].agg(["mean", lambda v: v.std(ddof=0)])
    table.columns = ["accuracy_mean", "accuracy_sd", "roc_auc_mean", "roc_auc_sd"]
    table["n_splits"] = grouped["accuracy"].count()
    return table.reset_index()[CLASSIFIER_COLUMNS]


def corrected_resampled_t(differences: np.ndarray, test_train_ratio: float,
                          level: float = 0.95) -> tuple[float, float, float, float]:
    """Nadeau & Bengio's (2003) corrected resampled t over random train/test splits.

    The splits share their data, so the plain t-test's variance ``s^2 / k`` is too small; the
    correction replaces it by ``s^2 * (1/k + n_test/n_train)``, with ``k - 1`` degrees of
    freedom.

    Args:
        differences: ``(k,)`` paired per-split differences.
        test_train_ratio: ``n_test / n_train`` of the splits.
        level: confidence level of the interval.

    Returns:
        ``(mean, ci_low, ci_high, p_value)``, p two-sided. With no spread the interval is the
        mean itself and p is 1 for a zero mean, else 0; all NaN with fewer than 2 splits.
    """
    d = np.asarray(differences, dtype=np.float64)
    k = len(d)
    if k < 2:
        return (np.nan,) * 4
    mean = float(d.mean())
    se = float(np.sqrt(d.var(ddof=1) * (1 / k + test_train_ratio)))
    if se == 0:
        return mean, mean, mean, float(mean == 0)
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * se
    p_value = float(2 * stats.t.sf(abs(mean) / se, k - 1))
    return mean, mean - half, mean + half, p_value


def _paired_claim(splits: pd.DataFrame, a: str, b: str, metric: str, protocol: str) -> dict:
    """Score of ``a`` minus score of ``b``, paired by split, corrected resampled t."""
    if metric not in _METRIC_NAMES:
        raise ValueError(f"metric must be 'accuracy' or 'roc_auc', got {metric!r}")
    part = splits[splits["protocol"] == protocol]
    models = part["model"].unique()
    if len(models) != 1:
        raise ValueError(f"need the splits of one model under protocol {protocol!r}, "
                         f"got {list(models)}")
    missing = {a, b} - set(part["features"])
    if missing:
        raise ValueError(f"no splits for feature set(s) {sorted(missing)}")
    wide = part.pivot(index="split", columns="features", values=metric)[[a, b]].dropna()
    sizes = part[part["features"] == a].dropna(subset=["n_test"])
    ratio = float(sizes["n_test"].mean() / sizes["n_train"].mean()) if len(sizes) else np.nan
    value, low, high, p_value = corrected_resampled_t((wide[a] - wide[b]).to_numpy(), ratio)
    statistic = (f"{_METRIC_NAMES[metric]}, {a} minus {b} "
                 f"(paired over splits, {protocol} training)")
    return {"statistic": statistic, "value": value, "ci_low": low, "ci_high": high,
            "p_value": p_value, "n": len(wide)}


def classifier_above_chance(splits: pd.DataFrame, features: str = "probability (all layers)",
                            metric: str = "roc_auc", protocol: str = "balanced") -> dict:
    """Whether a feature set tells memorized idioms from the rest better than random features.

    The per-split difference of ``features``' score and the random features' score (paired:
    the same split), averaged over the splits, with the corrected resampled t
    (:func:`corrected_resampled_t`): the splits share their data, so a plain t-interval would
    be too narrow (optimistic). Its ratio ``n_test / n_train`` is that of the examples actually
    used: the mean over splits of the balanced test set's size over the training set's.

    Args:
        splits: :func:`classifier_splits` of one model.
        features: the feature set (:data:`FEATURE_SETS`).
        metric: ``"roc_auc"`` (difference as a fraction) or ``"accuracy"`` (% points).
        protocol: the training protocol whose rows are compared.

    Returns:
        ``statistic, value, ci_low, ci_high`` (95%), ``p_value`` (two-sided), ``n`` (splits).
        The paper's expectation: positive.
    """
    return _paired_claim(splits, features, "random", metric, protocol)


def classifier_intermediate_layers(splits: pd.DataFrame, metric: str = "accuracy",
                                   protocol: str = "balanced") -> dict:
    """Whether the intermediate layers add to the last: all layers' probabilities vs the last.

    The per-split difference "probability (all layers)" minus "probability last layer"
    (paired: the same split), with the corrected resampled t as
    :func:`classifier_above_chance`. The paper: +5.1 accuracy points for GPT-2 medium.

    Args:
        splits: :func:`classifier_splits` of one model.
        metric: ``"accuracy"`` (% points) or ``"roc_auc"`` (fraction).
        protocol: the training protocol whose rows are compared.

    Returns:
        ``statistic, value, ci_low, ci_high`` (95%), ``p_value`` (two-sided), ``n`` (splits).
        The paper's expectation: positive.
    """
    return _paired_claim(splits, "probability (all layers)", "probability last layer", metric,
                         protocol)
