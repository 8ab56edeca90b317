"""Tests of memrecall.analysis.projection on hand-made projection results (0-based layers)."""

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis


def fake_results(n: int, n_layers: int, memorized: float, seed: int = 0,
                 promote_at: int | None = None) -> pd.DataFrame:
    """Rows like memrecall.project output; ranks reach 0 at ``promote_at`` (random if None)."""
    rng = np.random.default_rng(seed)
    ranks, probs = [], []
    for _ in range(n):
        start = rng.integers(0, n_layers) if promote_at is None else promote_at
        rank = rng.integers(1, 500, n_layers)
        rank[start:] = 0
        ranks.append(rank)
        probs.append(np.linspace(0.01, rng.uniform(0.2, 0.9), n_layers).astype(np.float32))
    return pd.DataFrame({
        "prompt": [f"p{i}" for i in range(n)],
        "is_memorized": rng.random(n) < memorized,
        "pred_rank": ranks, "pred_prob": probs,
        "target_rank": ranks, "target_prob": probs,
    })


@pytest.mark.parametrize(("ranks", "expected"), [
    ([[5, 0, 3, 0, 0]], [3]),
    ([[0, 0, 0]], [0]),
    ([[7, 7, 7, 0]], [3]),
    ([[0, 2, 0, 0], [1, 0, 0, 0]], [2, 1]),
])
def test_promotion_layer(ranks, expected):
    assert analysis.promotion_layer(np.array(ranks)).tolist() == expected


def test_promotion_layer_accepts_a_column_and_rejects_unfinished_rows():
    column = pd.Series([np.array([3, 0]), np.array([0, 0])])
    assert analysis.promotion_layer(column).tolist() == [1, 0]
    with pytest.raises(ValueError, match="rank 0"):
        analysis.promotion_layer(np.array([[0, 0], [0, 4]]))


def test_confidence_boost():
    probs = np.array([[0.1, 0.2, 0.5, 0.9], [0.3, 0.3, 0.4, 0.4]])
    boost = analysis.confidence_boost(probs, np.array([1, 3]))
    np.testing.assert_allclose(boost, [0.7, 0.0])


def test_normalised_depth():
    np.testing.assert_allclose(analysis.normalised_depth(4), [0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError):
        analysis.normalised_depth(0)


def test_label_groups_keeps_wiki_rows_as_wikipedia():
    idioms = fake_results(10, 5, memorized=0.5, seed=1)
    wiki = fake_results(4, 5, memorized=1.0, seed=2)
    labelled = analysis.label_groups(idioms, wiki)
    assert len(labelled) == 14
    expected = np.where(idioms["is_memorized"], "memorized", "non-memorized").tolist()
    assert labelled["group"].tolist() == expected + ["wikipedia"] * 4
    assert labelled["is_memorized"].tail(4).all()
    assert labelled.index.tolist() == list(range(14))
    facts = analysis.label_groups(idioms, facts_res=wiki)
    assert set(facts["group"].tail(4)) == {"facts: memorized"}


def test_per_example_table():
    frame = pd.DataFrame({"pred_rank": [np.array([4, 0, 0, 0]), np.array([0, 0, 0, 0])],
                          "pred_prob": [np.array([0.1, 0.2, 0.3, 0.6]), np.full(4, 0.5)]})
    table = analysis.per_example_table(frame)
    assert table["promotion_layer"].tolist() == [1, 0]
    np.testing.assert_allclose(table["promotion_depth"], [0.5, 0.25])
    np.testing.assert_allclose(table["confidence_boost"], [0.4, 0.0])
    assert "promotion_layer" not in frame.columns  # the input is not modified


def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 2000):
        values = rng.normal(5, 2, size=(n, 1))
        mean, lo, hi = analysis.bootstrap_mean_ci(values)
        assert lo[0] < mean[0] < hi[0]
        assert lo[0] < 5 < hi[0]
        widths.append(hi[0] - lo[0])
    assert widths[1] < widths[0] / 5  # ~ 1/sqrt(100) = 10x narrower
    again = analysis.bootstrap_mean_ci(values)
    assert again[1][0] == lo[0]  # seeded: reproducible


def test_layer_summary_shape_layers_and_order():
    frame = analysis.label_groups(fake_results(40, 6, 0.5), fake_results(10, 6, 0.0, seed=3))
    summary = analysis.layer_summary(frame, "pred_prob")
    assert list(summary.columns) == analysis.SUMMARY_COLUMNS
    assert len(summary) == 3 * 6
    assert summary["group"].unique().tolist() == list(analysis.GROUPS)
    assert summary["layer"].unique().tolist() == [0, 1, 2, 3, 4, 5]  # 0-based, as the arrays
    assert (summary["lo"] <= summary["mean"] + 1e-12).all()
    assert (summary["mean"] <= summary["hi"] + 1e-12).all()
    wiki = summary[summary["group"] == "wikipedia"]
    assert (wiki["n"] == 10).all()
    expected = np.stack(frame.loc[frame["group"] == "wikipedia", "pred_prob"]).mean(0)
    np.testing.assert_allclose(wiki["mean"], expected, rtol=1e-6)
    assert (summary["statistic"] == "mean").all()


def test_layer_summary_ranks_use_geometric_mean():
    frame = pd.DataFrame({"group": ["a", "a"],
                          "pred_rank": [np.array([9, 0]), np.array([999, 0])]})
    summary = analysis.layer_summary(frame, "pred_rank")
    # geometric mean of (rank + 1) = sqrt(10 * 1000) = 100, minus 1
    np.testing.assert_allclose(summary["mean"], [99.0, 0.0])
    assert (summary["statistic"] == "geometric mean").all()
    arithmetic = analysis.layer_summary(frame, "pred_rank", log=False)
    np.testing.assert_allclose(arithmetic["mean"], [504.0, 0.0])


def test_compare_groups_separated_vs_identical():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0, 1, 100), rng.normal(5, 1, 100)
    separated = analysis.compare_groups(low, high)
    assert separated["p_value"] < 1e-10
    assert separated["rank_biserial"] == pytest.approx(-1.0, abs=0.01)
    assert analysis.compare_groups(high, low)["rank_biserial"] == pytest.approx(1.0, abs=0.01)
    same = analysis.compare_groups(low, low)
    assert same["p_value"] > 0.9
    assert same["rank_biserial"] == pytest.approx(0.0)
    assert separated["n_a"] == 100 and separated["median_b"] > 4
    with pytest.raises(ValueError):
        analysis.compare_groups([], [1.0])


def test_group_tests_rows_per_other_group():
    frame = analysis.label_groups(fake_results(60, 5, 0.5), fake_results(20, 5, 0.0, seed=4))
    pairs = [("memorized", "non-memorized"), ("memorized", "wikipedia")]
    table = analysis.group_tests(analysis.per_example_table(frame), pairs,
                                 measures=["promotion_layer"])
    assert table["b"].tolist() == ["non-memorized", "wikipedia"]
    assert table["p_value"].between(0, 1).all()
    assert list(table.columns) == analysis.TEST_COLUMNS


# --------------------------------------------------------------------------- group tests


def table_of(groups: dict[str, list[int]], n_layers: int = 10) -> pd.DataFrame:
    """Per-example rows: promotion layers (0-based) per group, boost = layer / 10."""
    rows = [{"group": g, "promotion_layer": p, "confidence_boost": p / 10, "n_layers": n_layers}
            for g, layers in groups.items() for p in layers]
    return pd.DataFrame(rows, columns=["group", "promotion_layer", "confidence_boost",
                                       "n_layers"])


def test_group_tests_zero_based_medians_and_effect_sign():
    table = table_of({"memorized": [1, 2, 2, 3], "non-memorized": [7, 8, 9, 9]})
    tests = analysis.group_tests(table, [("memorized", "non-memorized")])
    layer = tests[tests["measure"] == "promotion_layer"].iloc[0]
    assert layer["median_a"] == 2 and layer["median_b"] == 8.5  # 0-based, as the table
    assert layer["rank_biserial"] == -1 and layer["p_value"] < 0.05 and layer["note"] == ""
    boost = tests[tests["measure"] == "confidence_boost"].iloc[0]
    assert boost["median_a"] == pytest.approx(0.2)
    assert layer["mean_a"] == 2 and boost["mean_a"] == pytest.approx(0.2)


@pytest.mark.parametrize("sizes", [(0, 5), (1, 5), (0, 0)])
def test_group_tests_skip_tiny_groups_with_a_note(sizes):
    table = table_of({"memorized": [3] * sizes[0], "non-memorized": [5] * sizes[1]})
    tests = analysis.group_tests(table, [("memorized", "non-memorized")])
    assert len(tests) == 2
    assert tests["p_value"].isna().all()
    assert tests["note"].str.startswith("not tested").all()
    assert tests["median_a"].isna().all() == (sizes[0] == 0)


def test_group_tests_by_model_stacks_models():
    tables = {"m1": table_of({"a": [1, 2, 3], "b": [4, 5, 6]}),
              "m2": table_of({"a": [1, 2], "b": [3]})}
    tests = analysis.group_tests_by_model(tables, [("a", "b")])
    assert list(tests.columns) == ["model", *analysis.TEST_COLUMNS]
    assert tests["model"].tolist() == ["m1", "m1", "m2", "m2"]
    assert tests.loc[tests["model"] == "m2", "note"].str.startswith("not tested").all()


def test_median_by_model_orders_groups():
    tables = {"m1": table_of({"wikipedia": [4], "memorized": [1, 3]}).assign(
        promotion_depth=lambda t: (t["promotion_layer"] + 1) / 10)}
    depth = analysis.median_by_model(tables)
    assert list(depth.columns) == ["memorized", "wikipedia"]
    assert depth.loc["m1", "memorized"] == pytest.approx(0.3)
    assert depth.columns.name == "median promotion depth"
