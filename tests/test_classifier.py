"""Table 5's protocol (memrecall.analysis.classifier)."""

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis
from memrecall.data.paper import TABLE5_FEATURES


def _labels(n=300, share=0.3, seed=0):
    return np.random.default_rng(seed).random(n) < share


def test_balanced_splits_protocol():
    y = _labels()
    splits = analysis.balanced_splits(y, n_splits=10, seed=1)
    assert len(splits) == 10
    n_test = int(np.ceil(0.2 * len(y)))
    for train, test in splits:
        assert len(train) == len(y) - n_test
        assert not set(train) & set(test)
        assert y[test].sum() == (~y[test]).sum() > 0
    assert not all(np.array_equal(splits[0][1], s[1]) for s in splits[1:])
    again = analysis.balanced_splits(y, n_splits=10, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))


def test_balanced_splits_needs_both_classes():
    with pytest.raises(ValueError, match="at least 2"):
        analysis.balanced_splits(np.array([True] + [False] * 20))


def test_random_features_near_chance_informative_far_above():
    y = _labels(n=400)
    rng = np.random.default_rng(3)
    features = {"random": rng.standard_normal((len(y), 12)),
                "informative": np.c_[y + 0.3 * rng.standard_normal(len(y)),
                                     rng.standard_normal(len(y))]}
    table = analysis.classifier_table("m", features, y).set_index("features")
    assert 40 <= table.loc["random", "accuracy_mean"] <= 60
    assert table.loc["informative", "accuracy_mean"] > 90
    assert table["accuracy_sd"].ge(0).all()


def test_classifier_is_l1_liblinear():
    model = analysis.l1_logistic()
    assert model.solver == "liblinear" and model.l1_ratio == 1.0


def test_fits_do_not_depend_on_numpy_global_random_state():
    # liblinear shuffles its coordinates; unseeded, it draws from numpy's global state
    rng = np.random.default_rng(0)
    features = rng.standard_normal((300, 40))
    y = features[:, 0] + rng.standard_normal(300) > 0
    coefs = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        coefs.append(analysis.l1_logistic(seed=0).fit(features, y).coef_)
    assert np.array_equal(*coefs)
    tables = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        tables.append(analysis.classifier_table("m", {"f": features}, y, seed=0))
    pd.testing.assert_frame_equal(*tables)


def _results(n=60, n_layers=5, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, n_layers))
    ranks = rng.integers(0, 1000, (n, n_layers))
    return pd.DataFrame({"pred_prob": list(probs), "pred_rank": list(ranks),
                         "is_memorized": rng.random(n) < 0.4})


def test_feature_sets_named_as_the_paper():
    res = _results()
    sets = analysis.feature_sets(res, hidden=np.ones((60, 8)), token_ids=np.zeros((60, 4)),
                                   rank_layers=3)
    assert tuple(sets) == TABLE5_FEATURES
    assert sets["probability + ranks"].shape == (60, 10)
    assert sets["ranks layers 1-12 + probability"].shape == (60, 3 + 5)
    assert sets["probability last layer"].shape == (60, 1)
    assert sets["random"].shape == (60, 5)
    without = analysis.feature_sets(res)
    assert "final hidden state" not in without and "token ids" not in without
    with pytest.raises(ValueError, match="rows"):
        analysis.feature_sets(res, hidden=np.ones((5, 8)))


def test_classifier_table_without_enough_examples_is_nan():
    res = _results().assign(is_memorized=False)
    table = analysis.classifier_table("tiny", analysis.feature_sets(res), res["is_memorized"])
    assert len(table) == 6 and table["accuracy_mean"].isna().all()


def test_classifier_table_columns_exact():
    res = _results()
    table = analysis.classifier_table("tiny", analysis.feature_sets(res), res["is_memorized"],
                                        n_splits=3)
    assert list(table.columns) == ["model", "features", "accuracy_mean", "accuracy_sd"]
    assert table["accuracy_mean"].between(0, 100).all()
