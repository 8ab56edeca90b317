"""Table 5's protocol (memrecall.analysis.classifier)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import memrecall as mr
from memrecall import analysis, pipeline
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
    table = analysis.classifier_table(analysis.classifier_splits("m", features, y))
    assert table["protocol"].tolist() == ["balanced", "balanced", "paper", "paper"]
    for _, rows in table.groupby("protocol"):
        rows = rows.set_index("features")
        # ~46 test examples per split, 10 splits: the mean of chance is within a few points
        assert 40 <= rows.loc["random", "accuracy_mean"] <= 60
        assert 0.4 <= rows.loc["random", "roc_auc_mean"] <= 0.6
        assert rows.loc["informative", "accuracy_mean"] > 90
        assert rows.loc["informative", "roc_auc_mean"] > 0.95
    assert table["accuracy_sd"].ge(0).all() and table["roc_auc_sd"].ge(0).all()
    assert (table["n_splits"] == 10).all()


def test_classifier_is_l1_liblinear():
    model = analysis.l1_logistic()
    assert model.solver == "liblinear" and model.l1_ratio == 1.0
    assert model.class_weight == "balanced"
    assert analysis.l1_logistic(protocol="paper").class_weight is None
    with pytest.raises(ValueError, match="unknown protocol"):
        analysis.l1_logistic(protocol="weighted")


def test_balanced_training_does_not_collapse_to_the_majority_class():
    # uninformative features, 14% positives (IdioMem's share of memorized idioms)
    rng = np.random.default_rng(5)
    y = rng.random(600) < 0.14
    features = rng.standard_normal((600, 12))
    paper_fit = analysis.l1_logistic(protocol="paper").fit(features, y)
    balanced_fit = analysis.l1_logistic(protocol="balanced").fit(features, y)
    assert not paper_fit.predict(features).any()  # everything "non-memorized"
    assert 0.2 < balanced_fit.predict(features).mean() < 0.8
    splits = analysis.balanced_splits(y, seed=2)
    paper = analysis.split_scores(features, y, splits, protocol="paper")
    balanced = analysis.split_scores(features, y, splits, protocol="balanced")
    assert (paper["accuracy"] == 50.0).all()  # the majority class on a balanced test set
    assert not (balanced["accuracy"] == 50.0).all()
    # 10 test sets of ~34 examples: the mean AUC of noise lies within 0.1 of 0.5 (~3 sd)
    assert abs(balanced["roc_auc"].mean() - 0.5) < 0.1
    assert list(balanced.columns) == ["split", "accuracy", "roc_auc", "n_train", "n_test"]
    assert balanced["n_test"].tolist() == [len(test) for _, test in splits]


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
    frames = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        frames.append(analysis.classifier_splits("m", {"f": features}, y, seed=0))
    pd.testing.assert_frame_equal(*frames)


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
    splits = analysis.classifier_splits("tiny", analysis.feature_sets(res), res["is_memorized"])
    assert len(splits) == 2 * 6 * 10 and splits["accuracy"].isna().all()
    table = analysis.classifier_table(splits)
    assert len(table) == 2 * 6 and table["accuracy_mean"].isna().all()
    assert table["roc_auc_mean"].isna().all() and (table["n_splits"] == 0).all()
    claim = analysis.classifier_above_chance(splits)
    assert np.isnan(claim["value"]) and claim["n"] == 0


def test_classifier_columns_exact():
    res = _results()
    splits = analysis.classifier_splits("tiny", analysis.feature_sets(res), res["is_memorized"],
                                        n_splits=3)
    assert list(splits.columns) == ["model", "protocol", "features", "split", "accuracy",
                                    "roc_auc", "n_train", "n_test"]
    table = analysis.classifier_table(splits)
    assert list(table.columns) == ["model", "features", "accuracy_mean", "accuracy_sd",
                                   "protocol", "roc_auc_mean", "roc_auc_sd", "n_splits"]
    assert table["accuracy_mean"].between(0, 100).all()
    assert table["roc_auc_mean"].between(0, 1).all() and (table["n_splits"] == 3).all()


def test_classifier_table_summarises_the_splits():
    splits = pd.DataFrame({"model": "m", "protocol": "paper", "features": "f",
                           "split": [0, 1, 2], "accuracy": [50.0, 60.0, 70.0],
                           "roc_auc": [0.5, 0.6, 0.9], "n_train": 8, "n_test": 2})
    row = analysis.classifier_table(splits).iloc[0]
    assert row["accuracy_mean"] == pytest.approx(60.0)
    assert row["accuracy_sd"] == pytest.approx(np.sqrt(200 / 3))  # population sd
    assert row["roc_auc_mean"] == pytest.approx(2 / 3)
    assert row["n_splits"] == 3


def test_corrected_resampled_t_is_the_plain_t_without_the_correction():
    d = np.array([1.0, 2.5, 0.5, 3.0, 2.0])
    plain = stats.ttest_1samp(d, 0.0)
    mean, low, high, p = analysis.corrected_resampled_t(d, 0.0)
    ci = plain.confidence_interval(0.95)
    assert (mean, low, high, p) == pytest.approx((d.mean(), ci.low, ci.high, plain.pvalue))
    # the correction widens the interval by sqrt((1/k + r) / (1/k)) and raises p
    _, low_c, high_c, p_c = analysis.corrected_resampled_t(d, 0.25)
    assert (high_c - low_c) / (high - low) == pytest.approx(np.sqrt((0.2 + 0.25) / 0.2))
    assert p_c > p


def test_corrected_resampled_t_without_spread():
    assert analysis.corrected_resampled_t(np.zeros(10), 0.25) == (0.0, 0.0, 0.0, 1.0)
    assert analysis.corrected_resampled_t(np.full(10, 2.0), 0.25) == (2.0, 2.0, 2.0, 0.0)
    assert np.isnan(analysis.corrected_resampled_t(np.ones(1), 0.25)).all()


def _split_frame(a, b, features=("probability (all layers)", "random"), model="m"):
    rows = [{"model": model, "protocol": "balanced", "features": name, "split": i,
             "accuracy": 100 * score, "roc_auc": score, "n_train": 80, "n_test": 20}
            for name, scores in zip(features, (a, b)) for i, score in enumerate(scores)]
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # pairing is by split, not order


def test_above_chance_pairs_by_split_with_the_corrected_interval():
    a = np.array([0.9, 0.8, 0.85, 0.7, 0.95])
    b = np.array([0.5, 0.55, 0.45, 0.5, 0.6])
    claim = analysis.classifier_above_chance(_split_frame(a, b))
    mean, low, high, p = analysis.corrected_resampled_t(a - b, 20 / 80)
    assert claim == {"statistic": claim["statistic"], "value": pytest.approx(mean),
                     "ci_low": pytest.approx(low), "ci_high": pytest.approx(high),
                     "p_value": pytest.approx(p), "n": 5}
    assert "ROC AUC" in claim["statistic"] and "random" in claim["statistic"]
    accuracy = analysis.classifier_above_chance(_split_frame(a, b), metric="accuracy")
    assert accuracy["value"] == pytest.approx(100 * mean)


def test_above_chance_of_separating_features():
    y = _labels(n=300, share=0.15)
    rng = np.random.default_rng(4)
    features = {"probability (all layers)": np.c_[y + 0.1 * rng.standard_normal(len(y))],
                "random": rng.standard_normal((len(y), 5))}
    claim = analysis.classifier_above_chance(analysis.classifier_splits("m", features, y))
    assert claim["n"] == 10 and claim["ci_low"] > 0 and claim["p_value"] < 0.05
    assert claim["value"] > 0.3  # AUC ~1 against ~0.5


def test_intermediate_layers_identical_sets_are_inconclusive():
    y = _labels(n=300, share=0.15)
    same = np.random.default_rng(6).standard_normal((len(y), 1)) + y[:, None]
    features = {"probability (all layers)": same, "probability last layer": same}
    claim = analysis.classifier_intermediate_layers(analysis.classifier_splits("m", features, y))
    assert (claim["value"], claim["ci_low"], claim["ci_high"], claim["p_value"]) == (0, 0, 0, 1)
    assert "last layer" in claim["statistic"] and "% points" in claim["statistic"]


def test_intermediate_layers_that_carry_the_signal_add_to_the_last():
    y = _labels(n=300, share=0.15)
    rng = np.random.default_rng(7)
    last = rng.standard_normal((len(y), 1))
    features = {"probability (all layers)": np.c_[y + 0.3 * rng.standard_normal(len(y)), last],
                "probability last layer": last}
    splits = analysis.classifier_splits("m", features, y, protocols=["paper"])
    claim = analysis.classifier_intermediate_layers(splits, protocol="paper")
    assert claim["ci_low"] > 0 and claim["value"] > 20  # ~95% against ~50%


def test_claims_refuse_ambiguous_input():
    both = pd.concat([_split_frame([0.6, 0.7], [0.5, 0.5]),
                      _split_frame([0.6, 0.7], [0.5, 0.5], model="other")])
    with pytest.raises(ValueError, match="one model"):
        analysis.classifier_above_chance(both)
    with pytest.raises(ValueError, match="feature set"):
        analysis.classifier_above_chance(_split_frame([0.6], [0.5]), features="token ids")
    with pytest.raises(ValueError, match="metric"):
        analysis.classifier_intermediate_layers(_split_frame([0.6], [0.5]), metric="f1")


def test_classifier_results_cached_table_and_splits(tmp_path):
    lm = mr.load("tiny-gpt2", device="cpu")
    texts = [f"the {w} went over the hill and far away" for w in
             ("cat", "dog", "cow", "fox", "hen", "owl", "pig", "rat", "ant", "bee") * 8]
    res = mr.project(lm, mr.make_probes(texts, lm))
    res["is_memorized"] = np.arange(len(res)) % 3 == 0  # constructed: a third "memorized"
    run = pipeline.settings("smoke", ["tiny-gpt2"], root=tmp_path)
    first = pipeline.classifier_results(lm, res, run)
    assert set(first.splits["protocol"]) == {"balanced", "paper"}
    assert len(first.splits) == 2 * 8 * 10  # 8 feature sets (hidden and token ids included)
    assert first.splits[["accuracy", "roc_auc"]].notna().all().all()
    pd.testing.assert_frame_equal(first.table, analysis.classifier_table(first.splits))
    again = pipeline.classifier_results(lm, res, run)
    pd.testing.assert_frame_equal(first.splits, again.splits)
    assert len(list(run.cache_dir.glob("*classifier_splits*.parquet"))) == 1
