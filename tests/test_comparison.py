"""The paper-vs-ours rows (memrecall.report.paper), the landmarks and the clusters they read."""

import warnings

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis, report
from memrecall.data import paper

COLUMNS = ["analysis", "quantity", "model", "population", "ours", "ci_low", "ci_high",
           "paper_model", "paper_value", "verdict"]


def _labelled(n=40, n_layers=6, seed=0):
    """Synthetic labelled results: memorized rows reach the top early, confidently."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, start, final in (("memorized", 2, 0.7), ("non-memorized", 5, 0.2),
                                ("wikipedia", 5, 0.25)):
        for _ in range(n):
            rank = np.r_[rng.integers(10, 5000, start), np.zeros(n_layers - start, int)]
            prob = np.linspace(0.001, final, n_layers) * rng.uniform(0.8, 1.0)
            rows.append({"group": group, "pred_rank": rank, "pred_prob": prob,
                         "is_memorized": group == "memorized",
                         "hard_to_guess": bool(rng.random() < 0.8)})
    return pd.DataFrame(rows)


def test_paper_counterpart():
    assert report.paper_counterpart("gpt2-large", False) == "gpt2-large"
    assert report.paper_counterpart("gemma-3-270m", False) == "gpt2-medium"
    assert report.paper_counterpart("tiny-bert", True) == "bert-base-uncased"


def test_number_verdict():
    assert report.number_verdict(44.0, 44.7, 5).startswith("agrees")
    text = report.number_verdict(16.1, 44.7, 5, digits=1, span=[28.3, 48.2])
    assert text.startswith("differs: lower by 28.6") and "outside" in text
    assert report.number_verdict(np.nan, 1.0, 0.1).startswith("differs")
    near = report.number_verdict(0.97, 0.875, 0.1, span=[0.86, 0.96])
    assert near.startswith("agrees") and "outside the paper's range" in near


def test_memorized_counts_and_table3_rows():
    frame = _labelled()
    idioms = frame[frame["group"] != "wikipedia"]
    counts = analysis.memorized_counts("m", idioms)
    assert list(counts["subset"]) == ["all", "hard_to_guess"]
    assert counts.set_index("subset").loc["all", "memorized_pct"] == pytest.approx(50.0)
    rows = report.table3_rows(counts, "gpt2-medium")
    assert list(rows.columns) == COLUMNS and (rows["analysis"] == "table3").all()
    assert rows["paper_value"].eq(44.7).all()
    assert rows["population"].tolist() == ["all", "filtered"]


def test_landmarks_read_ours_and_the_paper_alike():
    curves = analysis.mean_curves(_labelled())
    marks = analysis.curve_landmarks(curves).set_index("group")
    assert marks.loc["memorized", "depth_below_1"] == pytest.approx(3 / 6)
    assert marks.loc["non-memorized", "depth_below_1"] == pytest.approx(1.0)
    assert marks.loc["memorized", "final_prob"] > marks.loc["non-memorized", "final_prob"]
    theirs = analysis.curve_landmarks(paper.figure2().query("model == 'gpt2-medium'"))
    assert theirs.set_index("group").loc["memorized", "depth_below_1"] == pytest.approx(21 / 24)


def test_figure2_and_figure4_rows():
    curves = analysis.mean_curves(_labelled())
    rows = report.figure2_rows("m", curves, "gpt2-medium",
                               first_rank={"ci_low": 1.5, "ci_high": 2.5})
    assert list(rows.columns) == COLUMNS
    assert len(rows) == 3 * 3 + 2
    assert rows["verdict"].str.match(r"^(agrees|differs|uninformative)").all()
    verdicts = rows.set_index("quantity")["verdict"]
    depth = rows[rows["quantity"] == "relative depth where mean rank < 1 (memorized)"]
    assert depth["paper_value"].item() == pytest.approx(0.875)
    # non-memorized and Wikipedia rows reach rank 0 only at the last layer: no information
    assert verdicts["relative depth where mean rank < 1 (non-memorized)"].startswith(
        "uninformative")
    earlier = rows[rows["quantity"].str.contains("memorized minus non-memorized")]
    assert earlier["ours"].item() == pytest.approx(3 / 6 - 1.0)
    assert earlier["verdict"].item().startswith("agrees")
    ratio = rows[rows["quantity"].str.startswith("first-layer mean rank")]
    assert ratio[["ci_low", "ci_high"]].values.tolist() == [[1.5, 2.5]]
    facts = _labelled().replace({"group": {"memorized": "facts: memorized",
                                           "non-memorized": "facts: non-memorized"}})
    rows4 = report.figure4_rows("m", analysis.mean_curves(facts))
    assert set(rows4["analysis"]) == {"figure4"} and len(rows4) == 7
    assert set(rows4["population"]) == {"facts"}


def test_a_tie_at_the_last_layer_is_uninformative_not_agreement():
    frame = _labelled()
    late = frame.assign(pred_rank=[np.r_[np.full(5, 7), 0] for _ in range(len(frame))])
    rows = report.figure2_rows("m", analysis.mean_curves(late), "gpt2-medium")
    depth_rows = rows[rows["quantity"].str.startswith("relative depth where mean rank < 1")]
    assert len(depth_rows) == 4
    assert depth_rows["verdict"].str.startswith("uninformative").all()
    assert not rows["verdict"].str.startswith("agrees").all()


def test_clusters_and_figure5_rows():
    memorized = _labelled(n=30)
    memorized = memorized[memorized["group"] == "memorized"].reset_index(drop=True)
    labels = analysis.cluster_labels(memorized, k=3, seed=0)
    assert set(labels) == {0, 1, 2}
    assert np.bincount(labels)[0] == np.bincount(labels).max()
    assert np.array_equal(labels, analysis.cluster_labels(memorized, k=3, seed=0))
    curves = analysis.cluster_curves(memorized, labels)
    assert curves.groupby("cluster")["size"].first().sum() == len(memorized)
    summary = analysis.cluster_summary(memorized, labels)
    assert summary["ends_above_half"].all() and summary["shows_boost"].all()
    rows = report.figure5_rows("m", curves, summary)
    assert list(rows.columns) == COLUMNS
    # every synthetic cluster gains (100%), the paper's digitized cluster 4 (70 of 343) does not
    share = rows[rows["quantity"].str.startswith("% of memorized idioms")]
    assert share["ours"].item() == pytest.approx(100.0)
    assert share["paper_value"].item() == pytest.approx(100 * (343 - 70) / 343)
    assert share["verdict"].item().startswith("differs")
    curves_none, summary_none = analysis.cluster_memorized(memorized.assign(is_memorized=False))
    assert curves_none.empty and summary_none.empty
    none = report.figure5_rows("m", curves_none, summary_none)
    assert none["verdict"].str.startswith("differs").all() and none["ours"].isna().all()


@pytest.mark.parametrize(("r", "p", "verdict"), [
    (-0.10, 1e-5, "agrees"),            # weak, the paper's sign, significant
    (+0.10, 1e-5, "differs: the opposite sign"),  # weak but opposite: was "agrees"
    (-0.10, 0.3, "differs: not significant"),
    (-0.82, 1e-9, "differs: not weak"),  # SmolLM2's Spearman-sized correlation
])
def test_table4_needs_the_papers_sign_and_significance(r, p, verdict):
    stat = {"value": r, "ci_low": r - 0.05, "ci_high": r + 0.05, "p_value": p, "n": 1700}
    rows = report.table4_rows("m", stat, "gpt2-medium")
    assert list(rows.columns) == COLUMNS
    assert rows["verdict"].item().startswith(verdict)
    assert rows["paper_value"].item() == pytest.approx(-0.22)


def test_table5_rows():
    table = pd.DataFrame({"model": "m", "features": ["random", "probability (all layers)"] * 2,
                          "accuracy_mean": [50.0, 60.0, 51.0, 82.0], "accuracy_sd": 3.0,
                          "protocol": ["paper"] * 2 + ["balanced"] * 2})
    rows5 = report.table5_rows(table, "gpt2-medium")
    assert rows5["paper_value"].tolist() == [49.5, 84.6]
    assert rows5["ours"].tolist() == [50.0, 60.0]
    assert rows5["verdict"].str.startswith("agrees").tolist() == [True, False]
    balanced = report.table5_rows(table, "gpt2-medium", protocol="balanced")
    assert balanced["ours"].tolist() == [51.0, 82.0]
    assert balanced["verdict"].str.startswith("agrees").tolist() == [True, True]
    assert balanced["quantity"].str.endswith("balanced training)").all()
    with pytest.raises(ValueError, match="'weighted'"):
        report.table5_rows(table, "gpt2-medium", protocol="weighted")


def test_merge_comparison_replaces_an_analysis_keeps_others(tmp_path):
    path = tmp_path / "paper_comparison.csv"
    first = report.comparison_frame([
        report.comparison_row("figure3", "q", "m", 1.0, "gpt2-medium", 2.0, "differs"),
        report.comparison_row("table3", "old", "m", 1.0, "gpt2-medium", 2.0, "differs"),
    ])
    report.merge_comparison(path, first)
    new = first.iloc[[1]].assign(quantity="new")
    merged = report.merge_comparison(path, new)
    assert list(pd.read_csv(path).columns) == COLUMNS
    assert merged["quantity"].tolist() == ["new", "q"]  # table3 sorts before figure3
    with pytest.raises(ValueError, match="unknown analyses"):
        report.merge_comparison(path, new.assign(analysis="table9"))


def test_table5_side_by_side_and_verdict_counts():
    ours = pd.DataFrame({"model": "m", "features": ["random", "probability (all layers)"] * 2,
                         "accuracy_mean": [50.0, np.nan, 52.0, 70.0],
                         "accuracy_sd": [3.0, np.nan, 1.0, 2.0],
                         "protocol": ["paper"] * 2 + ["balanced"] * 2,
                         "roc_auc_mean": [0.5, np.nan, 0.51, 0.8],
                         "roc_auc_sd": [0.01, np.nan, 0.02, 0.03]})
    table = report.table5_side_by_side(ours)
    assert list(table.index) == list(paper.TABLE5_FEATURES)
    assert table.columns[0] == "gpt2-medium (paper)" and table.columns[-1] == "m"
    assert table.loc["random", "m"] == "50.0 ± 3.0"
    assert table.loc["probability (all layers)", "m"] == "n/a"
    assert table.loc["token ids", "m"] == ""
    auc = report.table5_side_by_side(ours, protocol="balanced", metric="roc_auc")
    assert list(auc.columns) == ["m"]  # the paper reports no ROC AUC
    assert auc.loc["probability (all layers)", "m"] == "0.800 ± 0.030"
    ours = ours[ours["protocol"] == "paper"]
    rows = report.table5_rows(ours.fillna(80.0), "gpt2-medium")
    counts = report.verdict_counts(rows)
    assert counts.loc["table5", "m"] == "2 of 2 agree"


def _one_row(analysis="table3", quantity="q"):
    return report.comparison_frame([
        report.comparison_row(analysis, quantity, "m", 1.0, "gpt2-medium", 2.0, "differs")])


@pytest.mark.parametrize("content", [
    b"\xff\xfe garbage \x00\x81",  # not UTF-8: was a raw UnicodeDecodeError
    b"<<<<<<< HEAD\nanalysis,quantity\n=======\nanalysis,q\n>>>>>>> other\n",  # a git conflict
    b"analysis,quantity,ours\nfigure3,q,1.0\n",  # hand-edited: columns dropped
    b"",  # empty
], ids=["binary", "conflict", "columns", "empty"])
def test_an_unusable_comparison_file_is_replaced_with_a_warning(tmp_path, content):
    path = tmp_path / "paper_comparison.csv"
    path.write_bytes(content)
    with pytest.warns(UserWarning, match=r"paper_comparison\.csv.*not merged into") as caught:
        merged = report.merge_comparison(path, _one_row())
    assert "paper_comparison.csv.bak" in str(caught[0].message)
    assert (tmp_path / "paper_comparison.csv.bak").read_bytes() == content
    assert merged["quantity"].tolist() == ["q"]
    assert list(pd.read_csv(path).columns) == COLUMNS
    # once replaced, merges work again, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = report.merge_comparison(path, _one_row("figure3", "f"))
    assert again["quantity"].tolist() == ["q", "f"]
