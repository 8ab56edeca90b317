"""Who memorizes what: shares by source and flag, the whole-word criterion, agreement."""

import pandas as pd
import pytest

from memrecall import analysis


def test_memorization_by_source_and_flags():
    frame = pd.DataFrame({"source": ["A", "A", "B", "B", "B"],
                          "flag": [True, False, True, True, False],
                          "is_memorized": [True, False, True, True, False]})
    table = analysis.memorization_by(frame, ["source", "flag"])
    assert table["column"].tolist() == ["source", "source", "flag", "flag"]
    by = table.set_index(["column", "value"])
    assert by.loc[("source", "B"), "n_memorized"] == 2
    assert by.loc[("source", "A"), "memorized_pct"] == pytest.approx(50.0)
    assert by.loc[("flag", True), "memorized_pct"] == pytest.approx(100.0)
    assert by.loc[("flag", False), "n"] == 2


def test_pairwise_agreement_counts_and_kappa():
    matrix = pd.DataFrame({"a": [True, True, False, False], "b": [True, False, False, False],
                           "c": [True, True, False, False]})
    table = analysis.pairwise_agreement(matrix).set_index(["model_a", "model_b"])
    row = table.loc[("a", "b")]
    assert [row["both"], row["only_a"], row["only_b"], row["neither"]] == [1, 1, 0, 2]
    assert row["agreement"] == pytest.approx(0.75)
    assert row["jaccard"] == pytest.approx(0.5)
    # po = .75, pe = .5 * .25 + .5 * .75 = .5 -> kappa = .5
    assert row["kappa"] == pytest.approx(0.5)
    assert table.loc[("a", "c"), "kappa"] == pytest.approx(1.0)
    assert len(table) == 3


def test_memorization_matrix_aligns_by_text():
    one = pd.DataFrame({"text": ["x", "y", "z"], "is_memorized": [True, False, True]})
    two = pd.DataFrame({"text": ["z", "x"], "is_memorized": [False, True]})
    matrix = analysis.memorization_matrix({"m1": one, "m2": two})
    assert list(matrix.columns) == ["m1", "m2"]
    assert matrix.loc["z"].tolist() == [True, False]
    assert "y" not in matrix.index


def test_memorized_rates_per_source():
    labelled = analysis.label_groups(
        pd.DataFrame({"is_memorized": [True, False, False, False]}),
        facts_res=pd.DataFrame({"is_memorized": [True, True]}))
    rates = analysis.memorized_rates({"m": labelled})
    assert rates["source"].tolist() == ["idioms", "facts"]
    assert rates["memorized (%)"].tolist() == [25.0, 100.0]
    assert rates["n"].tolist() == [4, 2]


def test_whole_word_summary():
    res = pd.DataFrame({"is_memorized": [True, True, True, False],
                        "n_target_tokens": [1, 2, 3, 2],
                        "whole_word": [True, True, False, False]})
    masked = res.assign(whole_word=pd.NA)
    table = analysis.whole_word_summary({"causal": res, "masked": masked})
    assert list(table.index) == ["causal"]
    row = table.loc["causal"]
    assert row["multi-token targets"] == 3
    assert row["share of idioms %"] == pytest.approx(75.0)
    assert row["first piece %"] == pytest.approx(200 / 3)
    assert row["whole word %"] == pytest.approx(100 / 3)
    assert row["whole | first %"] == pytest.approx(50.0)
    # single-token hit + two-piece whole word; the three-piece hit lacks its whole word
    assert row["memorized % (whole-word criterion)"] == pytest.approx(50.0)
