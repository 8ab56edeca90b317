"""The attention claims' statistics, notebook 07's computed prose and its pipeline step."""

import numpy as np
import pandas as pd
import pytest

from memrecall import pipeline, report
from memrecall.analysis import claim_rows
from memrecall.analysis.attention_claims import (
    before_vs_after,
    blocked_part,
    group_contrast,
    probe_means,
    relative_change,
    source_contrast,
)

N_LAYERS = 6
WINDOW = 2


def sweep(rel: dict[tuple[str, str, int], float], base: float = 0.5) -> pd.DataFrame:
    """A per-probe sweep of 2-layer windows whose relative change is ``rel[group, sources,
    probe]`` at every start layer, plus 0.0 one layer later for probe 0 of each group (so the
    per-probe average is what the claims must use)."""
    rows = []
    for (group, sources, probe), value in rel.items():
        for start in range(N_LAYERS - WINDOW + 1):
            change = value if not (probe in (0, 10) and start == N_LAYERS - WINDOW) else 0.0
            rows.append({"probe": probe, "group": group, "sources": sources, "window": WINDOW,
                         "start_layer": start, "end_layer": start + WINDOW - 1,
                         "n_sources": 2, "base_pred_prob": base,
                         "pred_prob": base * (1 + change / 100)})
    return pd.DataFrame(rows)


def test_relative_change_is_in_percent_of_the_clean_probability():
    frame = pd.DataFrame({"base_pred_prob": [0.5, 0.2, 0.0], "pred_prob": [0.25, 0.3, 0.1]})
    np.testing.assert_allclose(relative_change(frame), [-50.0, 50.0, np.nan])


def test_probe_means_split_windows_at_each_probes_promotion_layer():
    detail = pd.DataFrame({
        "probe": 0, "group": "memorized", "sources": "content", "window": 2, "n_sources": 1,
        "start_layer": [0, 1, 2, 3, 4], "end_layer": [1, 2, 3, 4, 5],
        "base_pred_prob": 0.5, "pred_prob": [0.25, 0.35, 0.45, 0.5, 0.55]})
    promotion = pd.Series({0: 2})  # windows ending at <= 2: starts 0, 1; after: starts 3, 4
    before = probe_means(detail, 2, promotion=promotion, part="before")
    after = probe_means(detail, 2, promotion=promotion, part="after")
    assert before[0] == pytest.approx((-50 - 30) / 2)
    assert after[0] == pytest.approx((0 + 10) / 2)
    assert probe_means(detail, 2)[0] == pytest.approx((-50 - 30 - 10 + 0 + 10) / 5)
    with pytest.raises(ValueError, match="promotion"):
        probe_means(detail, 2, part="before")
    with pytest.raises(ValueError, match="part"):
        probe_means(detail, 2, promotion=promotion, part="during")


def test_each_claim_statistic_reads_known_answers():
    rel = {("memorized", "content", p): -40.0 - p for p in range(5)}
    rel |= {("memorized", "function", p): -10.0 for p in range(5)}
    rel |= {("non-memorized", "content", p): -5.0 for p in range(10, 15)}
    detail = sweep(rel)
    # probe 0's last window is 0.0: its mean over 5 windows is -40 * 4 / 5 = -32
    memorized = np.array([-32.0, -41, -42, -43, -44])
    contrast = source_contrast(detail, WINDOW)
    assert contrast["value"] == pytest.approx((memorized - np.array([-8, -10, -10, -10, -10]))
                                              .mean())
    assert contrast["n"] == 5 and contrast["ci_low"] <= contrast["value"] <= contrast["ci_high"]
    groups = group_contrast(detail, WINDOW)
    assert groups["value"] == pytest.approx(memorized.mean() - (-5 * 4 / 5 - 5 * 4) / 5)
    assert (groups["n_a"], groups["n_b"]) == (5, 5)
    assert groups["ci_high"] < 0  # every memorized probe falls more than every other one
    promotion = pd.Series({p: 3 for p in range(5)})  # before: starts 0-2; after: start 4
    before = blocked_part(detail, WINDOW, promotion)
    assert before["value"] == pytest.approx(np.mean([-40.0 - p for p in range(5)]))
    paired = before_vs_after(detail, WINDOW, promotion)
    # probe 0's only "after" window is its 0.0 one; the others are flat
    assert paired["value"] == pytest.approx(-40.0 / 5) and paired["n"] == 5


def test_claim_rows_decide_by_the_fixed_rule():
    strong = sweep({("memorized", "content", p): -40.0 - p for p in range(8)}
                   | {("memorized", "function", p): 0.0 for p in range(8)}
                   | {("non-memorized", "content", p): 5.0 + p for p in range(10, 18)})
    promotion = pd.Series({p: 3 for p in range(8)} | {p: 5 for p in range(10, 18)})
    rows = {r["claim"]: r for r in claim_rows.attention_claims("m", strong, WINDOW, promotion,
                                                             "filtered")}
    assert rows["attention_content_before_promotion"]["verdict"] == "supported"
    assert rows["attention_content_vs_function"]["verdict"] == "supported"
    assert rows["attention_content_vs_nonmemorized"]["verdict"] == "supported"
    reversed_ = sweep({("memorized", "content", p): 20.0 + p for p in range(8)}
                      | {("memorized", "function", p): 0.0 for p in range(8)})
    rows = {r["claim"]: r for r in claim_rows.attention_claims("m", reversed_, WINDOW, promotion,
                                                             "filtered")}
    assert rows["attention_content_before_promotion"]["verdict"] == "contradicted"
    # no non-memorized probe: no value, no verdict either way
    assert rows["attention_content_vs_nonmemorized"]["verdict"] == "inconclusive"
    assert np.isnan(rows["attention_content_vs_nonmemorized"]["value"])


def test_empty_source_sets_and_missing_parts_leave_probes_out():
    detail = sweep({("memorized", "content", p): -30.0 for p in range(3)})
    detail.loc[detail["probe"] == 2, "n_sources"] = 0
    assert list(probe_means(detail, WINDOW).index) == [0, 1]
    early = pd.Series({0: 0, 1: 0, 2: 0})  # promoted in the first layer: no window before
    assert blocked_part(detail, WINDOW, early)["n"] == 0
    assert np.isnan(blocked_part(detail, WINDOW, early)["value"])


def table_rows(group: str, values: list[float], sources: str = "content",
               window: int = 1) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"group": group, "sources": sources, "window": window,
                         "start_layer": np.arange(1, n + 1), "end_layer": np.arange(1, n + 1),
                         "n_probes": 10, "changed_pct": np.abs(values),
                         "prob_change_rel_pct": values, "ci_low": np.array(values) - 5,
                         "ci_high": np.array(values) + 5})


def test_strongest_windows_and_where_lines():
    table = pd.concat([table_rows("memorized", [-5, -40, -10, -2]),
                       table_rows("wikipedia", [-30, -1, 0, 0])])
    found = report.strongest_windows(table, 4, 1)
    assert found["group"].tolist() == ["memorized", "wikipedia"]
    assert found["start_layer"].tolist() == [2, 1]
    assert found["depth"].tolist() == [0.5, 0.25]
    lines = report.where_lines("m", table, 4, 1, {"memorized": 3.0})
    assert "lowest at layer 2" in lines[1] and "ends before it" in lines[1]
    assert "promotion" not in lines[2]


def test_promotion_medians_are_one_based():
    probes = pd.DataFrame({"group": ["memorized"] * 3 + ["wikipedia"],
                           "promotion_layer": [1, 2, 9, 5]})
    assert report.promotion_medians(probes) == {"memorized": 3.0, "wikipedia": 6.0}


def test_ffn_relation_reads_both_files(tmp_path):
    ffn = pd.DataFrame({"group": "memorized", "control": "non_dominant", "k": 10,
                        "start_layer": [1, 2, 3, 4, 1], "end_layer": [1, 2, 3, 4, 2],
                        "n_probes": 10, "changed_pct": [90.0, 30, 20, 10, 99]})
    ffn.to_csv(tmp_path / "k.csv", index=False)
    table_rows("memorized", [-1, -50, -30, -20]).to_csv(tmp_path / "a.csv", index=False)
    text = report.ffn_relation("m", tmp_path / "k.csv", tmp_path / "a.csv", 4)
    assert "sub-updates of one layer changes most memorized predictions at layer 1 (90%" in text
    assert "changes most at layer 2 (50%" in text and "later than the FFN peak" in text
    assert "rho = -0.20" in text  # ranks (4, 3, 2, 1) against (1, 4, 3, 2): 1 - 6 * 12 / 60
    missing = report.ffn_relation("m", tmp_path / "none.csv", tmp_path / "a.csv", 4)
    assert "none.csv not written yet" in missing


@pytest.mark.slow
def test_attention_step_is_cached_and_writes_its_table(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    run = pipeline.settings("smoke", "tiny-qwen2", root=tmp_path, interactive=False)
    lm = run.load("tiny-qwen2")
    first = pipeline.attention_results(lm, run)
    again = pipeline.attention_results(lm, run)
    pd.testing.assert_frame_equal(first.detail, again.detail)
    assert "promotion_layer" in first.probes and first.windows == (1,)
    assert set(first.detail["probe"]) == set(range(len(first.probes)))
    (path,) = pipeline.write_attention_outputs(run, {"tiny-qwen2": first})
    assert path.name == "attention_tiny-qwen2.csv"
    assert list(pd.read_csv(path).columns) == ["group", "sources", "window", "start_layer",
                                               "end_layer", "n_probes", "changed_pct",
                                               "prob_change_rel_pct", "ci_low", "ci_high"]
    claims = pipeline.attention_claims(run, {"tiny-qwen2": first})
    assert len(claims) == 4 and set(claims["model"]) == {"tiny-qwen2"}
    assert (run.results_dir / "claims.csv").is_file()
