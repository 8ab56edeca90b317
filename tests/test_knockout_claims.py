"""The knockout claims (analysis.knockout_claims) on per-probe sweeps with known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from memrecall import analysis


def detail_from(changed, group="memorized", control="non_dominant", window=1, first_probe=0):
    """Per-probe rows from ``{start_layer: (n_probes,) bool}``: one window size, one control."""
    rows = []
    for start, flags in changed.items():
        for probe, flag in enumerate(flags):
            rows.append({"probe": first_probe + probe, "group": group, "control": control,
                         "k_requested": 10, "k": 10, "start_layer": start,
                         "end_layer": start + window - 1, "window": window,
                         "changed": bool(flag)})
    return pd.DataFrame(rows)


def first_n(n_changed, n=20):
    return np.arange(n) < n_changed


def test_bootstrap_p_value():
    assert analysis.bootstrap_p_value(np.array([-1, 1, 2, 3])) == pytest.approx(0.5)
    assert analysis.bootstrap_p_value(np.ones(2000)) == pytest.approx(1 / 2000)  # clipped
    assert analysis.bootstrap_p_value(np.zeros(10)) == 1  # 2 * 1, clipped
    with pytest.raises(ValueError):
        analysis.bootstrap_p_value(np.array([]))


def test_layer1_alone_changes_all():
    detail = detail_from({0: first_n(30, 30), **{s: first_n(0, 30) for s in range(1, 6)}})
    claim = analysis.layer1_vs_other_layers(detail, "non_dominant")
    assert list(claim)[:6] == list(analysis.CLAIM_KEYS)
    assert (claim["value"], claim["ci_low"], claim["ci_high"]) == (100, 100, 100)
    assert claim["p_value"] == pytest.approx(1 / 2000) and claim["n"] == 30
    assert claim["other_layer"] == 1  # every other layer ties at 0: the first of them
    assert "layer 1 minus strongest other single layer" in claim["statistic"]


def test_layer1_against_a_known_other_layer():
    detail = detail_from({0: first_n(20), 1: first_n(0), 3: first_n(10), 5: first_n(2)})
    claim = analysis.layer1_vs_other_layers(detail, "non_dominant")
    assert claim["value"] == 50 and claim["other_layer"] == 3
    assert 0 < claim["ci_low"] < 50 < claim["ci_high"] < 100 and claim["p_value"] < 0.01


def test_layer1_interval_rechooses_the_strongest_layer():
    # layer 1 (start 0) changes exactly the probes that start 1 changes, and nine more layers
    # change 10 of 20 probes each: on all probes every layer ties (value 0), but in a resample
    # the strongest other layer is at least layer 1's equal and usually above it
    rng = np.random.default_rng(1)
    patterns = {s: rng.permutation(first_n(10)) for s in range(1, 11)}
    detail = detail_from({0: patterns[1], **patterns})
    claim = analysis.layer1_vs_other_layers(detail, "non_dominant")
    assert claim["value"] == 0
    assert claim["ci_high"] <= 0 < -claim["ci_low"]  # a fixed layer would give [0, 0]


def test_layer1_missing_or_single_probe():
    claim = analysis.layer1_vs_other_layers(detail_from({0: first_n(5)}), "non_dominant")
    assert np.isnan(claim["value"]) and claim["other_layer"] == -1
    one = analysis.layer1_vs_other_layers(detail_from({0: [True], 1: [False]}), "non_dominant")
    assert one["value"] == 100 and np.isnan(one["ci_low"]) and np.isnan(one["p_value"])
    two_ks = pd.concat([detail_from({0: first_n(5), 1: first_n(0)}),
                        detail_from({0: first_n(5), 1: first_n(0)}).assign(k_requested=100)])
    with pytest.raises(ValueError, match="pass k="):
        analysis.layer1_vs_other_layers(two_ks, "non_dominant")
    assert analysis.layer1_vs_other_layers(two_ks, "non_dominant", k=100)["value"] == 25


def groups(a_changed, b_changed, n=30):
    """Two groups over three 1-layer windows; only the window from layer 0 differs by group."""
    a = detail_from({0: first_n(a_changed, n), 1: first_n(n, n), 2: first_n(0, n)})
    b = detail_from({0: first_n(b_changed, n), 1: first_n(0, n), 2: first_n(n, n)},
                    group="non-memorized", first_probe=n)
    return pd.concat([a, b], ignore_index=True)


def test_group_difference_equal_groups():
    claim = analysis.group_difference(groups(12, 12), "non_dominant")
    assert claim["value"] == 0 and claim["ci_low"] < 0 < claim["ci_high"]
    assert claim["p_value"] == pytest.approx(1)  # Fisher's test on two identical rows
    assert (claim["n"], claim["n_a"], claim["n_b"]) == (60, 30, 30)


def test_group_difference_specific_to_memorized():
    detail = groups(30, 3)
    claim = analysis.group_difference(detail, "non_dominant")
    assert claim["value"] == pytest.approx(90) and 75 < claim["ci_low"] <= 90 <= claim["ci_high"]
    exact = stats.fisher_exact([[30, 0], [3, 27]]).pvalue
    assert claim["p_value"] == pytest.approx(exact) and claim["p_value"] < 1e-10
    assert analysis.group_difference(detail, "non_dominant", start_layer=1)["value"] == 100
    assert analysis.group_difference(detail, "non_dominant", start_layer=2)["value"] == -100
    empty = analysis.group_difference(detail, "non_dominant", b="wikipedia")
    assert np.isnan(empty["value"]) and empty["n_b"] == 0


def slope_detail(n_layers=20, n=40, window=3):
    """3-layer windows: layer 1 changes 90%, windows to 40% depth a constant 30% (the same
    probes), later windows rise from 10% to 90% with depth."""
    changed = {}
    for start in range(n_layers - window + 1):
        depth = (start + 1) / n_layers
        share = 0.9 if start == 0 else 0.3 if depth <= 0.4 else 0.1 + 0.8 * (depth - 0.45) / 0.45
        changed[start] = first_n(round(share * n), n)
    return detail_from(changed, window=window)


def test_depth_slope_stat_late_rise_and_flat_early():
    detail = slope_detail()
    late = analysis.depth_slope_stat(detail, 20, "late")
    assert late["value"] > 100 and late["ci_low"] > 0 and late["p_value"] < 0.01
    assert late["n"] == 40 and late["n_windows"] == 10  # starts 8-17 (depth 0.45-0.90)
    early = analysis.depth_slope_stat(detail, 20, "early")
    # the same probes change in every early window: every resample is flat
    assert (early["value"], early["ci_low"], early["ci_high"], early["p_value"]) \
        == pytest.approx((0, 0, 0, 1))
    table = analysis.depth_slopes(detail, 20).iloc[0]  # the same numbers as depth_slopes
    assert (late["value"], late["ci_low"], late["ci_high"]) \
        == pytest.approx((table.late_slope, table.late_lo, table.late_hi))


def test_depth_slope_stat_too_few_windows():
    short = analysis.depth_slope_stat(slope_detail(n_layers=5), 5, "early")
    assert short["n_windows"] == 1 and np.isnan(short["value"]) and np.isnan(short["ci_low"])
    assert analysis.depth_slope_stat(slope_detail(), 20, group="wikipedia")["n"] == 0
    with pytest.raises(ValueError, match="early"):
        analysis.depth_slope_stat(slope_detail(), 20, "middle")


def test_knockout_claims_on_a_sweep_with_known_answers():
    """Layer 1 changes every memorized prediction and nothing else does; non-memorized ones never
    change; 3-layer windows fall from 80% to 40% by 40% of the depth, then stay at 20%."""
    n, none, every = 20, np.zeros(20, bool), np.ones(20, bool)
    single = {start: every if start == 0 else none for start in range(10)}
    shares = {0: 0.9, 1: 0.8, 2: 0.6, 3: 0.4, 4: 0.2, 5: 0.2, 6: 0.2, 7: 0.2}
    detail = pd.concat([
        detail_from(single),
        detail_from(single, control="dominant"),
        detail_from(dict.fromkeys(range(10), none), group="non-memorized", first_probe=100),
        detail_from({s: first_n(round(v * n), n) for s, v in shares.items()}, window=3),
    ], ignore_index=True)
    rows = pd.DataFrame(analysis.knockout_claims("m", detail, 10, "filtered"))
    verdicts = rows.set_index("claim")["verdict"].to_dict()
    assert verdicts == {"knockout_layer1_nondominant": "supported",
                        "knockout_layer1_dominant": "supported",
                        "knockout_specific": "supported",
                        "knockout_falls_early": "supported",
                        "knockout_flat_late": "supported"}
    values = rows.set_index("claim")["value"]
    assert values["knockout_layer1_nondominant"] == 100 and values["knockout_specific"] == 100
    assert values["knockout_flat_late"] == 0  # the same probes change in every late window
    assert set(rows["population"]) == {"filtered"} and set(rows["lens"]) == {"logit"}
