"""What people read: the one 0 -> 1-based shift, medians tables, verdicts, summary rows."""

import numpy as np
import pandas as pd
import pytest
from test_stats import fake_results as random_results
from test_stats import table_of

from memrecall import analysis, report


def test_to_display_layer_is_plus_one_for_scalars_and_arrays():
    assert report.to_display_layer(0) == 1
    assert report.to_display_layer(2.5) == 3.5
    np.testing.assert_array_equal(report.to_display_layer(np.arange(3)), [1, 2, 3])
    assert np.isnan(report.to_display_layer(float("nan")))


def test_readable_tests_one_based_medians():
    table = table_of({"memorized": [1, 2, 2, 3], "non-memorized": [7, 8, 9, 9]})
    tests = report.readable_tests(analysis.group_tests(table, [("memorized", "non-memorized")]))
    layer = tests[tests["measure"] == "promotion_layer"].iloc[0]
    assert layer["median_a"] == 3 and layer["median_b"] == 9.5  # 0-based 2 and 8.5, plus 1
    boost = tests[tests["measure"] == "confidence_boost"].iloc[0]
    assert boost["median_a"] == pytest.approx(0.2)  # not shifted
    assert layer["mean_a"] == 3 and boost["mean_a"] == pytest.approx(0.2)
    assert "<table" in report.style_tests(tests).to_html()


def test_verdicts_one_based_and_effect_words():
    table = table_of({"memorized": [1, 2, 2, 3], "non-memorized": [7, 8, 9, 9]})
    tests = analysis.group_tests(table, [("memorized", "non-memorized")])
    layer = tests[tests["measure"] == "promotion_layer"].iloc[0]
    boost = tests[tests["measure"] == "confidence_boost"].iloc[0]
    assert "mean 0.2 vs" in report.verdict(boost)
    assert "earlier than" in report.verdict(layer, n_layers=10)
    assert "of 10" in report.verdict(layer, n_layers=10)
    assert "median 3 vs 9.5 of 10" in report.verdict(layer, n_layers=10)  # 1-based
    assert "smaller than" in report.verdict(boost)


@pytest.mark.parametrize("sizes", [(0, 5), (1, 5), (0, 0)])
def test_verdict_of_an_untested_pair(sizes):
    table = table_of({"memorized": [3] * sizes[0], "non-memorized": [5] * sizes[1]})
    tests = analysis.group_tests(table, [("memorized", "non-memorized")])
    assert "not tested" in report.verdict(tests.iloc[0])


def test_verdict_not_significant():
    table = table_of({"a": [1, 5, 3, 7], "b": [2, 6, 4, 8]})
    row = analysis.group_tests(table, [("a", "b")], measures=["promotion_layer"]).iloc[0]
    assert "no significant difference" in report.verdict(row)


def test_medians_table_shifts_only_the_promotion_layer():
    table = table_of({"memorized": [1, 9, 9], "wikipedia": [9]}).assign(
        promotion_depth=0.5, final_prob=0.9)
    numbers, medians = analysis.group_medians(table), report.medians_table(table)
    assert list(medians.index) == list(numbers.index) == ["memorized", "wikipedia"]
    assert numbers.loc["memorized", "median_promotion_layer"] == 9  # 0-based
    assert medians.loc["memorized", "median promotion layer (1-based)"] == 10
    assert numbers.loc["memorized", "last_layer_pct"] == pytest.approx(200 / 3)
    assert medians.loc["memorized", "promoted only at the last layer (%)"] == pytest.approx(200 / 3)
    assert medians.loc["memorized", "median confidence boost (probability)"] == pytest.approx(0.9)
    assert medians.loc["memorized", "mean confidence boost (probability)"] == \
        pytest.approx(19 / 30) == numbers.loc["memorized", "mean_confidence_boost"]
    assert medians.loc["wikipedia", "n"] == numbers.loc["wikipedia", "n"] == 1


# --------------------------------------------------------------------------- summary row


def fake_results(memorized: list[bool], promotion: list[int], n_layers: int = 4) -> pd.DataFrame:
    ranks = [np.array([5] * p + [0] * (n_layers - p)) for p in promotion]
    probs = [np.linspace(0.1, 0.9, n_layers) for _ in promotion]
    return pd.DataFrame({"is_memorized": memorized, "pred_rank": ranks, "pred_prob": probs})


def test_summary_row_is_one_based():
    idioms = fake_results([True, True, False], [0, 2, 3])
    wiki = fake_results([False, False], [3, 3])
    row = report.summary_row("m", idioms, wiki)
    table = analysis.per_example_table(analysis.label_groups(idioms, wiki))
    raw = analysis.group_medians(table)
    assert row["median_promotion_layer_1based_memorized"] == raw.loc[
        "memorized", "median_promotion_layer"] + 1 == 2
    assert row["median_promotion_layer_1based_wikipedia"] == 4
    assert not any(k.startswith("median_promotion_layer_memorized") for k in row)
    assert row["memorized_pct"] == pytest.approx(66.7)
    assert row["mean_confidence_boost_wikipedia"] == 0
    assert set(row) >= {"model", "n_layers", "n_memorized", "mean_confidence_boost_non_memorized"}


def test_summary_row_columns_in_order():
    row = report.summary_row("m", fake_results([True, False], [0, 3]), fake_results([False], [3]))
    groups = ["memorized", "non_memorized", "wikipedia"]
    expected = ["model", "n_layers", "n_idioms", "n_memorized", "memorized_pct"]
    for g in groups:
        expected += [f"n_{g}", f"median_promotion_layer_1based_{g}",
                     f"median_promotion_depth_{g}"]
    expected.remove("n_memorized")  # the memorized group's size is n_memorized, already there
    expected.insert(3, "n_memorized")
    expected += [f"mean_confidence_boost_{g}" for g in groups]
    assert list(row) == list(dict.fromkeys(expected))


def test_summary_row_without_memorized_is_nan():
    row = report.summary_row("m", fake_results([False, False], [1, 3]))
    assert np.isnan(row["median_promotion_layer_1based_memorized"])
    assert np.isnan(row["mean_confidence_boost_memorized"])


def test_summary_row_numbers():
    idioms = random_results(20, 8, 0.25, promote_at=2)
    late = np.array([3] * 6 + [0, 0])
    pairs = zip(idioms["pred_rank"], idioms["is_memorized"], strict=True)
    idioms["pred_rank"] = [rank if memorized else late for rank, memorized in pairs]
    wiki = random_results(5, 8, 0.0, promote_at=7)
    row = report.summary_row("fake", idioms, wiki)
    n_mem = int(idioms["is_memorized"].sum())
    assert row["model"] == "fake" and row["n_layers"] == 8 and row["n_idioms"] == 20
    assert row["n_memorized"] == n_mem
    assert row["memorized_pct"] == pytest.approx(100 * n_mem / 20, abs=0.05)
    assert row["median_promotion_layer_1based_memorized"] == 2 + 1
    assert row["median_promotion_layer_1based_non_memorized"] == 6 + 1
    assert row["median_promotion_layer_1based_wikipedia"] == 7 + 1
    assert row["median_promotion_depth_wikipedia"] == 1.0
    assert row["n_wikipedia"] == 5


# --------------------------------------------------------------------------- split line


def test_split_layer():
    table = table_of({"memorized": [2, 3, 4], "non-memorized": [9, 9]}, n_layers=10)
    assert report.split_layer(table) == 4.0  # median 3, 1-based
    assert report.split_layer(table, group="non-memorized") is None  # last layer: no line
    assert report.split_layer(table, group="facts: memorized") is None  # empty group


def test_split_layer_is_one_based():
    table = analysis.per_example_table(
        analysis.label_groups(random_results(10, 6, 1.0, promote_at=2)))
    assert report.split_layer(table) == 3.0


# --------------------------------------------------------------------------- two steps


@pytest.mark.parametrize(("mem", "boost_sign", "expected"), [
    ([0, 1, 1, 2], 1, "supported"),
    ([0, 1, 1, 2], -1, "partly supported: promoted earlier, but not boosted more"),
    ([8, 9, 9, 9], 1, "partly supported: boosted more, but not promoted earlier"),
    ([8, 9, 9, 9], -1, "not supported"),
])
def test_two_step_verdict(mem, boost_sign, expected):
    table = table_of({"memorized": mem, "non-memorized": [5, 6, 6, 7]})
    table["confidence_boost"] = np.where(table["group"] == "memorized", boost_sign, 0) + \
        np.arange(len(table)) * 1e-3
    tests = analysis.group_tests(table, [("memorized", "non-memorized")])
    assert report.two_step_verdict(tests) == expected


def test_two_step_verdict_small_groups():
    table = table_of({"memorized": [1], "non-memorized": [5, 6]})
    tests = analysis.group_tests(table, [("memorized", "non-memorized")])
    assert report.two_step_verdict(tests).startswith("not tested")
    assert report.two_step_verdict(tests.iloc[:0]).startswith("not tested")


def test_conclusions_per_model_and_missing_pairs_tested_here():
    idioms = table_of({"memorized": [0, 1, 1, 2], "non-memorized": [5, 6, 6, 7]})
    facts = table_of({"facts: memorized": [1, 2], "facts: non-memorized": [8]})
    table = pd.concat([idioms.assign(source="idioms"), facts.assign(source="facts")],
                      ignore_index=True)
    table["is_memorized"] = ~table["group"].str.contains("non-")
    table["confidence_boost"] = np.where(table["is_memorized"], 1, 0) + \
        np.arange(len(table)) * 1e-3
    pairs = [("facts: memorized", "facts: non-memorized")]
    tests = analysis.group_tests_by_model({"m": table}, pairs)
    text = report.conclusions({"m": table}, tests,
                              two_step=[*pairs, ("memorized", "non-memorized")])
    lines = text.splitlines()
    assert lines[0] == "m (10 layers): memorized 50.0% of idioms, 66.7% of facts"
    assert lines[1].startswith("    median promotion layer: memorized 2, non-memorized 7")
    assert sum("not tested" in line for line in lines) == 3  # 2 verdicts + the facts' two steps
    assert lines[-1].endswith("(memorized promoted earlier AND boosted more than "
                              "non-memorized): supported")


# --------------------------------------------------------------------------- lens choice

FULL = ((1e-5, -0.40), (1e-4, 0.30))      # (p, Cliff's delta) of promotion layer and boost
NONE = ((0.50, -0.05), (0.40, 0.02))


def lens_test_rows(model: str, lens: str, steps) -> list[dict]:
    """Rows shaped like analysis.group_tests output for memorized against non-memorized."""
    return [dict(model=model, lens=lens, measure=measure, a="memorized", b="non-memorized",
                 n_a=50, n_b=50, median_a=0.0, median_b=0.0, mean_a=0.0, mean_b=0.0,
                 p_value=p, rank_biserial=delta, note="")
            for measure, (p, delta) in zip(("promotion_layer", "confidence_boost"), steps,
                                           strict=True)]


@pytest.mark.parametrize(("base", "other", "change"), [
    (FULL, ((1e-5, -0.42), (1e-4, 0.31)), "survives"),
    (FULL, ((1e-9, -0.60), (1e-6, 0.40)), "strengthens"),
    (FULL, ((1e-3, -0.25), (1e-3, 0.20)), "weakens"),
    (FULL, ((0.50, -0.05), (1e-4, 0.30)), "weakens"),   # only partly supported any more
    (FULL, NONE, "vanishes"),
    (NONE, FULL, "appears"),
    (NONE, NONE, "absent under both"),
    (((1e-5, -0.40), (0.40, 0.02)), FULL, "strengthens"),
])
def test_lens_verdicts(base, other, change):
    tests = pd.DataFrame(lens_test_rows("m", "logit lens", base)
                         + lens_test_rows("m", "tuned lens", other))
    verdicts = report.lens_verdicts(tests)
    assert list(verdicts["lens"]) == ["logit lens", "tuned lens"]
    assert list(verdicts["change"]) == ["baseline", change]
    assert verdicts["promotion_delta"].iloc[1] == other[0][1]
    text = report.lens_conclusions(verdicts)
    assert text.startswith("m: two-step picture under the logit lens") and change in text


def test_lens_verdicts_keep_model_then_lens_order():
    rows = [row for lens in ("logit lens", "linear shortcut") for model in ("b", "a")
            for row in lens_test_rows(model, lens, FULL)]
    verdicts = report.lens_verdicts(pd.DataFrame(rows))
    assert list(zip(verdicts["model"], verdicts["lens"], strict=True)) == [
        ("b", "logit lens"), ("b", "linear shortcut"), ("a", "logit lens"),
        ("a", "linear shortcut")]


def test_kl_at_depths_names_layers_one_based():
    kl = pd.DataFrame({"model": "m", "lens": ["logit lens"] * 4 + ["tuned lens"] * 4,
                       "layer": [0, 1, 2, 3] * 2, "kl_bits": [8, 4, 2, 0, 4, 2, 1, 0.0]})
    table = report.kl_at_depths(kl, depths=(0.25, 0.5))
    assert list(table.columns) == ["layer 1/4", "layer 2/4"]
    assert table.loc[("m", "tuned lens"), "layer 2/4"] == 2
    assert list(table.index.get_level_values("lens")) == ["logit lens", "tuned lens"]


def test_summary_for_reading_shows_counts_as_integers():
    rows = [report.summary_row("big", fake_results([True] * 3 + [False], [0, 1, 2, 3]),
                               fake_results([False], [3])),
            report.summary_row("small", fake_results([False, False], [1, 3]))]
    rows[0]["n_idioms"] = 852  # as many as IdioMem
    rows[1]["mean_confidence_boost_non_memorized"] = -0.00012  # would push a column to 1e-04
    frame = report.summary_table(rows)
    readable = report.summary_for_reading(frame)
    assert list(readable.columns) == ["big", "small"]
    assert list(readable.index) == [c for c in frame.columns if c != "model"]
    assert readable.loc["n_idioms", "big"] == "852" and readable.loc["n_layers", "small"] == "4"
    assert readable.loc["n_memorized", "small"] == "0"
    assert readable.loc["memorized_pct", "big"] == "75.0"
    assert readable.loc["median_promotion_layer_1based_memorized", "big"] == "2"
    assert readable.loc["median_promotion_layer_1based_memorized", "small"] == "–"  # empty group
    assert readable.loc["mean_confidence_boost_non_memorized", "small"] == "-0.0001"
    counts = readable.loc[[c for c in readable.index if c.startswith("n_")]]
    assert counts.map(lambda cell: cell.replace(",", "").isdigit()).all().all()
    assert "e+" not in readable.to_string() and "e-" not in readable.to_string()
