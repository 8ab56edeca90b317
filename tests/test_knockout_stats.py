"""The knockout read-outs, verdicts and paper rows, on synthetic per-probe sweeps."""

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis, figures, report
from memrecall.report import COMPARISON_COLUMNS, merge_comparison


def sweep_like(n_layers=10, n_probes=40, seed=0, falls=True, late_rise=False):
    """A per-probe sweep: the non-dominant knockout changes layer 1 always, then a falling (or
    flat) probability with depth (``late_rise``: rising again past 40% of the depth); the
    dominant one rarely; one wikipedia group."""
    rng = np.random.default_rng(seed)
    rows = []
    for group in ("memorized", "wikipedia"):
        for probe in range(n_probes):
            for control in ("dominant", "non_dominant"):
                for start in range(n_layers):
                    for size in (1, 2, 3):
                        end = start + size - 1
                        if end >= n_layers:
                            continue
                        if control == "non_dominant":
                            p = 1.0 if start == 0 else (
                                max(0.1, 0.8 - 1.5 * start / n_layers) if falls else 0.3)
                            if late_rise and start / n_layers > 0.4:
                                p = min(1.0, 0.2 + 1.5 * (start / n_layers - 0.4))
                        else:
                            p = 0.6 if start == 0 else 0.05
                        changed = bool(rng.random() < p)
                        rows.append({
                            "probe": probe + (n_probes if group == "wikipedia" else 0),
                            "group": group, "control": control, "k_requested": 10, "k": 10,
                            "start_layer": start, "end_layer": end, "window": size,
                            "changed": changed, "target_rank_change": 50.0 * changed,
                            "target_prob_change": -30.0 * changed,
                            "base_target_prob": 0.6, "target_prob": 0.6 - 0.3 * changed})
    return pd.DataFrame(rows)


def test_table_means_and_intervals():
    detail = sweep_like()
    table = analysis.knockout_table(detail, n_boot=200)
    assert list(table.columns[:8]) == ["group", "control", "k_requested", "k", "start_layer",
                                       "end_layer", "window", "n_probes"]
    windows = 10 + 9 + 8
    assert len(table) == 2 * 2 * windows and (table.n_probes == 40).all()
    row = table[(table.group == "memorized") & (table.control == "dominant")
                & (table.start_layer == 3) & (table.end_layer == 4)].iloc[0]
    cell = detail[(detail.group == "memorized") & (detail.control == "dominant")
                  & (detail.start_layer == 3) & (detail.end_layer == 4)]
    assert row.changed_pct == pytest.approx(100 * cell.changed.mean())
    assert row.target_prob_change == pytest.approx(cell.target_prob_change.mean())
    # 0.6 -> 0.3 is -50% of the clean probability
    assert row.target_prob_change_rel == pytest.approx(-50 * cell.changed.mean())
    for value in analysis.READOUTS:
        assert (table[f"{value}_lo"] <= table[value] + 1e-9).all()
        assert (table[value] <= table[f"{value}_hi"] + 1e-9).all()
    first = table[(table.control == "non_dominant") & (table.start_layer == 0)
                  & (table.window == 1)]
    assert (first.changed_pct == 100).all() and (first.changed_pct_lo == 100).all()


def test_first_layer_dominance_and_slopes():
    detail = sweep_like()
    table = analysis.knockout_table(detail, n_boot=200)
    dom = analysis.first_layer_dominance(table, "non_dominant", "memorized")
    assert dom["first"] == 100 and dom["dominates"] and dom["other_layer"] > 0
    slopes = analysis.depth_slopes(detail, 10, n_boot=200, split=0.5)
    mem = slopes[slopes.group == "memorized"].iloc[0]
    assert mem.early_slope < 0 and mem.early_lo <= mem.early_slope <= mem.early_hi
    assert mem.n_early == 4 and mem.n_late == 3  # layers 2-5 (0.2-0.5), 6-8 of 3-layer windows
    flat = analysis.depth_slopes(sweep_like(falls=False), 10, n_boot=200)
    assert flat.iloc[0].early_lo < 0 < flat.iloc[0].early_hi
    # a line of exact values: its slopes
    line = analysis.line_slopes(np.array([0.1, 0.2, 0.3, 0.5, 0.6]),
                                      np.array([99, 70, 50, 20, 20]), np.array([0, 1, 2, 4, 5]))
    assert line["early_slope"] == pytest.approx(-200) and line["late_slope"] == 0
    assert line["n_early"] == 2  # layer 1 (start 0) is left to first_layer_dominance


def test_paper_matrix_and_line():
    matrix = analysis.paper_window_matrix("figure3", "non_dominant")
    assert matrix.shape == (24, 24) and matrix.loc[0, 0] == 99 and matrix.loc[1, 3] == 72
    assert np.isnan(matrix.loc[0, 3]) and np.isnan(matrix.loc[3, 0])
    line = report.paper_depth_line()
    assert len(line) == 22 and line.value.iloc[1] == 72 and line.layer.iloc[0] == 1


def test_csv_verdicts_and_paper_rows(tmp_path):
    detail = sweep_like()
    summary = detail.groupby(["group", "control", "k_requested", "k", "start_layer",
                              "end_layer", "window"], sort=False).agg(
        n_probes=("probe", "size"), changed_pct=("changed", "mean"),
        target_rank_change=("target_rank_change", "mean"),
        target_prob_change=("target_prob_change", "mean")).reset_index()
    rows = report.write_knockouts_csv(summary, tmp_path / "knockouts_m.csv")
    assert list(pd.read_csv(tmp_path / "knockouts_m.csv").columns) \
        == report.KNOCKOUT_COLUMNS
    assert rows.start_layer.min() == 1 and rows.end_layer.max() == 10  # 1-based
    table = analysis.knockout_table(detail, n_boot=200)
    lines = report.knockout_verdicts(table, detail, 10)
    assert len(lines) == 4
    assert "layer 1 dominates: yes (paper: 99% vs at most 20%: yes)" in lines[0]
    assert "falls: yes" in lines[2] and "(paper: " in lines[2]
    assert report.knockout_verdicts(table[table.group == "wikipedia"], detail, 10)[0] \
        .startswith("no memorized probes")
    paper_rows = report.figure3_rows("m", table, detail, 10)
    assert list(paper_rows.columns) == COMPARISON_COLUMNS
    assert (paper_rows.analysis == "figure3").all() and len(paper_rows) == 10
    first = paper_rows.iloc[0]
    assert first.ours == 100 and first.paper_value == 99 and first.verdict.startswith("agrees")
    merged = merge_comparison(tmp_path / "paper_comparison.csv", paper_rows)
    assert len(merged) == 10


def test_panels_and_figures(tmp_path):
    detail = sweep_like()
    table = analysis.knockout_table(detail, n_boot=100)
    panels = report.beside_paper_panels({"m": table}, "target_prob_change_rel")
    assert list(panels) == ["dominant", "non-dominant"]
    cells = panels["non-dominant"]
    assert list(cells) == ["m, memorized (n=40)", report.PAPER_PANEL]
    assert cells["m, memorized (n=40)"].loc[0, 0] == pytest.approx(50)  # the decrease, in %
    assert cells[report.PAPER_PANEL].loc[0, 0] == pytest.approx(68.85)
    points = report.beside_paper_panels({"m": table}, "target_prob_change")["non-dominant"]
    assert list(points) == ["m, memorized (n=40)"]  # points: the paper has no such panel
    assert points["m, memorized (n=40)"].loc[0, 0] == pytest.approx(30)
    saved = figures.plot_heatmaps(report.beside_paper_panels({"m": table},
                                                                    "target_rank_change"),
                                tmp_path / "fig8", "ranks", vmin=None, vmax=None, symlog=1)
    assert saved.png.is_file()
    lines = report.depth_lines({"m": (table, 10)})
    assert list(lines.columns) == ["model", "layer", "depth", "value", "lo", "hi"]
    assert len(lines) == 8 and lines.depth.iloc[0] == pytest.approx(0.1)
    fig = figures.plot_depth_lines(lines, report.paper_depth_line(),
                                          tmp_path / "fig7", "Figure 7").figure
    assert {line.get_gid() for line in fig.axes[0].lines} == {"m", "paper"}


def test_reference_group_is_memorized_when_any_model_has_one():
    none = pd.Series(["non-memorized", "wikipedia"])
    assert report.reference_group([none]) == "non-memorized"
    assert report.reference_group([none, pd.Series(["memorized"])]) == "memorized"
    assert report.reference_group(iter([none])) == "non-memorized"


def test_a_significant_late_rise_is_not_flat():
    """Qwen's case: the late slope's interval above 0 was read as "flattens"."""
    detail = sweep_like(n_layers=20, n_probes=60, late_rise=True)
    table = analysis.knockout_table(detail, n_boot=200)
    rows = report.figure3_rows("m", table, detail, 20).set_index("quantity")
    late = rows.loc[[q for q in rows.index if ", late (" in q][0]]
    assert late["ci_low"] > 0  # the constructed rise is significant
    assert late["verdict"].startswith("differs: flattens not here")
    flat = sweep_like(n_layers=20, n_probes=60)
    flat_rows = report.figure3_rows("m", analysis.knockout_table(flat, n_boot=200), flat, 20)
    flat_late = flat_rows[flat_rows["quantity"].str.contains(", late (", regex=False)].iloc[0]
    assert flat_late["ci_low"] <= 0 <= flat_late["ci_high"]
    assert flat_late["verdict"].startswith("agrees: flattens here")


def test_relative_prob_change():
    detail = pd.DataFrame({"base_target_prob": [0.5, 0.2, 0.0, 1e-5],
                           "target_prob": [0.25, 0.2, 0.1, 1e-3]})
    rel = analysis.relative_prob_change(detail)
    assert rel.iloc[0] == pytest.approx(-50) and rel.iloc[1] == 0
    assert np.isnan(rel.iloc[2])  # no clean probability: no relative change
    assert rel.iloc[3] == pytest.approx(9900)


def test_figure9_rows_in_the_papers_unit():
    table = analysis.knockout_table(sweep_like(), n_boot=200)
    rows = report.figure9_rows("m", table)
    assert [q.split(", ")[2] for q in rows["quantity"]] == ["non_dominant", "dominant"]
    assert list(rows.columns) == COMPARISON_COLUMNS
    rows = rows.to_dict("records")
    first = rows[0]  # every non-dominant layer-1 knockout takes 0.6 -> 0.3: a 50% decrease
    assert first["analysis"] == "figure9" and first["model"] == "m"
    assert (first["ours"], first["ci_low"], first["ci_high"]) == pytest.approx((50, 50, 50))
    assert first["paper_value"] == pytest.approx(68.85) and first["paper_model"] == "gpt2-medium"
    assert first["verdict"].startswith("differs: lower by 18.")  # 68.85 - 50
    assert "outside our 95% interval [50.0, 50.0]" in first["verdict"]
    dominant = rows[1]  # changed with probability 0.6: a decrease of 50% of those
    assert dominant["ci_low"] <= dominant["ours"] <= dominant["ci_high"]
    assert 10 < dominant["ours"] < 50 and dominant["paper_value"] == pytest.approx(9.12)
    assert report.figure9_rows("m", table[table.group == "wikipedia"]).empty
    with pytest.raises(ValueError, match="target_prob_change_rel"):
        report.figure9_rows("m", table.drop(columns="target_prob_change_rel"))
