"""Table 5 of the paper: the per-layer profile telling memorized from non-memorized idioms.

The protocol is the paper's (Appendix A): scikit-learn's L1-penalised logistic regression with
the liblinear solver and default settings (no feature scaling), 10 random 80/20 train/test
splits, each test set balanced by subsampling the larger class (the training set keeps its
imbalance), accuracy in % as mean and standard deviation over the splits. Every feature set of a
model is scored on the same splits.

The feature sets are named as in the paper's Table 5 (:data:`FEATURE_SETS`). Two of them need
the model itself (the final hidden state, the prompt's token ids): compute them with
:func:`memrecall.forward.model_features` and pass them in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from ..data.paper import TABLE5_FEATURES

__all__ = [
    "CLASSIFIER_COLUMNS",
    "FEATURE_SETS",
    "RANK_LAYERS",
    "balanced_splits",
    "classifier_table",
    "feature_sets",
    "l1_logistic",
    "split_accuracies",
]

FEATURE_SETS = TABLE5_FEATURES

# "ranks layers 1-12 + probability": the paper's name fixes the first 12 layers whatever the
# model's depth (half of GPT-2 medium, a third of GPT-2 large, all of BERT base).
RANK_LAYERS = 12

CLASSIFIER_COLUMNS = ["model", "features", "accuracy_mean", "accuracy_sd"]


def l1_logistic(seed: int = 0) -> LogisticRegression:
    """The paper's classifier: L1 logistic regression, liblinear, otherwise sklearn defaults.

    ``seed`` seeds liblinear's coordinate shuffling, which otherwise draws from numpy's global
    random state (and so moves the accuracies from one run to the next).
    """
    return LogisticRegression(l1_ratio=1.0, solver="liblinear", random_state=seed)


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


def split_accuracies(features: np.ndarray, y: np.ndarray,
                     splits: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> np.ndarray:
    """Test accuracy (fraction) of :func:`l1_logistic` (seeded by ``seed``) on each split.

    A training set with one class only predicts that class (accuracy 0.5 on a balanced test).
    """
    y = np.asarray(y, dtype=bool)
    accuracies = []
    for train, test in splits:
        if len(np.unique(y[train])) < 2:
            predicted = np.full(len(test), y[train][0])
        else:
            with warnings.catch_warnings():  # unscaled ranks, as in the paper
                warnings.simplefilter("ignore", ConvergenceWarning)
                predicted = l1_logistic(seed).fit(features[train], y[train]).predict(features[test])
        accuracies.append(float(np.mean(predicted == y[test])))
    return np.asarray(accuracies)


def classifier_table(model: str, features: Mapping[str, np.ndarray], y: np.ndarray, *,
                     n_splits: int = 10, test_size: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Mean and sd accuracy (%) of every feature set on the same balanced splits.

    Args:
        model: the model's name (first column).
        features: :func:`feature_sets` output.
        y: ``(n,)`` labels, e.g. ``res["is_memorized"]``.
        n_splits: number of splits (:func:`balanced_splits`).
        test_size: fraction drawn for testing before balancing.
        seed: seed of the splits and of the classifier.

    Returns:
        ``model, features, accuracy_mean, accuracy_sd`` (the columns of ``classifier.csv``);
        the sd is the population sd over splits (numpy's default). Both are NaN when there are
        too few examples of a class to draw the splits (e.g. a model that memorizes nothing).
    """
    y = np.asarray(y, dtype=bool)
    try:
        splits = balanced_splits(y, n_splits, test_size, seed)
    except ValueError:
        splits = []
    rows = []
    for name, matrix in features.items():
        accuracy = (100 * split_accuracies(matrix, y, splits, seed) if splits
                    else np.full(1, np.nan))
        rows.append({"model": model, "features": name, "accuracy_mean": float(accuracy.mean()),
                     "accuracy_sd": float(accuracy.std())})
    return pd.DataFrame(rows, columns=CLASSIFIER_COLUMNS)
