"""The claims table: the fixed verdict rule, the effect sizes, each claim on constructed data."""

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis
from memrecall.analysis import CLAIMS, claim_verdict

COLUMNS = ["claim", "model", "population", "lens", "statistic", "value", "ci_low", "ci_high",
           "p_value", "n", "verdict"]


@pytest.mark.parametrize(("claim", "value", "lo", "hi", "verdict"), [
    ("promotion_vs_nonmemorized", -0.3, -0.4, -0.2, "supported"),     # earlier, interval < 0
    ("promotion_vs_nonmemorized", +0.3, +0.2, +0.4, "contradicted"),  # later, interval > 0
    ("promotion_vs_nonmemorized", -0.1, -0.2, +0.05, "inconclusive"),  # covers 0
    ("boost_vs_wikipedia", +0.2, +0.1, +0.3, "supported"),
    ("first_layer_rank", 1.5, 1.2, 1.9, "supported"),                  # a ratio: null 1
    ("first_layer_rank", 0.9, 0.8, 1.05, "inconclusive"),
    ("first_layer_rank", 0.7, 0.6, 0.8, "contradicted"),
    ("clusters_boost", 80.0, 60.0, 95.0, "supported"),                 # a share: null 50
    ("clusters_boost", 40.0, 20.0, 60.0, "inconclusive"),
    ("promotion_vs_wikipedia", np.nan, np.nan, np.nan, "inconclusive"),
])
def test_the_rule_decides_by_sign_and_interval(claim, value, lo, hi, verdict):
    assert claim_verdict(CLAIMS[claim], value, lo, hi) == verdict


@pytest.mark.parametrize(("lo", "hi", "verdict"), [
    (-20.0, 15.0, "supported"),      # flat: covers 0, within the margin
    (+35.0, +68.0, "contradicted"),  # Qwen's significant late rise: not flat
    (-60.0, -10.0, "contradicted"),  # still falling
    (-80.0, 70.0, "inconclusive"),   # covers 0 but too wide to call flat
])
def test_a_flatness_claim(lo, hi, verdict):
    assert claim_verdict(CLAIMS["knockout_flat_late"], (lo + hi) / 2, lo, hi) == verdict


def test_every_claim_has_a_sentence_a_statistic_and_a_direction():
    assert len(CLAIMS) == 20
    for claim in CLAIMS.values():
        assert claim.sentence.endswith(".") and claim.statistic
        assert claim.expected_sign in (-1, 0, 1)
    assert {c.id for c in CLAIMS.values() if c.intermediate} == {
        "promotion_vs_nonmemorized", "promotion_vs_wikipedia", "boost_vs_nonmemorized",
        "boost_vs_wikipedia", "first_layer_rank", "facts_promotion", "facts_boost"}


def test_claim_row_validates_population_and_lens():
    stat = {"value": -0.3, "ci_low": -0.4, "ci_high": -0.2, "p_value": 1e-4, "n": 50}
    row = analysis.claim_row("promotion_vs_wikipedia", "m", "filtered", "shortcut", stat)
    assert list(row) == COLUMNS and row["verdict"] == "supported"
    with pytest.raises(ValueError, match="population"):
        analysis.claim_row("promotion_vs_wikipedia", "m", "some", "logit", stat)
    with pytest.raises(ValueError, match="logit lens only"):
        analysis.claim_row("knockout_specific", "m", "filtered", "tuned", stat)


def test_cliffs_delta_on_known_samples():
    full = analysis.cliffs_delta([5, 6, 7], [1, 2, 3])
    assert full["value"] == 1.0 and full["ci_low"] == 1.0 and full["n"] == 6
    rng = np.random.default_rng(0)
    same = analysis.cliffs_delta(rng.normal(size=400), rng.normal(size=400))
    assert same["ci_low"] < 0 < same["ci_high"]
    shifted = analysis.cliffs_delta(rng.normal(0, 1, 400), rng.normal(1, 1, 400))
    # P(a > b) for a shift of one sd: Phi(-1/sqrt(2)) = 0.24, so delta = 2 * 0.24 - 1 = -0.52
    assert shifted["ci_low"] < -0.52 < shifted["ci_high"] and shifted["p_value"] < 1e-10
    assert np.isnan(analysis.cliffs_delta([1.0], [2.0, 3.0])["value"])


def test_ratio_and_correlation():
    ratio = analysis.ratio_of_means(np.full(50, 3.0), np.full(40, 2.0))
    assert ratio["value"] == 1.5 and ratio["ci_low"] == ratio["ci_high"] == 1.5
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    y = -x + rng.normal(size=500)
    r = analysis.correlation(x, y)
    assert r["value"] == pytest.approx(np.corrcoef(x, y)[0, 1]) and r["n"] == 500
    z = np.arctanh(r["value"])  # the Fisher-z interval, by hand
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(
        (np.tanh(z - 1.959964 / np.sqrt(497)), np.tanh(z + 1.959964 / np.sqrt(497))))
    assert np.isnan(analysis.correlation([1, 2, 3], [1, 2, 3])["value"])  # too few pairs


def _labelled(n=60, n_layers=8, seed=0, memorized_first=True):
    """Memorized rows promoted at layer 2 and boosted; the others promoted at the last layer."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, source in (("memorized", "idioms"), ("non-memorized", "idioms"),
                          ("wikipedia", "wikipedia")):
        for i in range(n):
            start = 2 if (group == "memorized") == memorized_first else n_layers - 1
            first = 4000 if group == "memorized" else 2000
            rank = np.r_[first + rng.integers(0, 100), rng.integers(5, 50, start - 1),
                         np.zeros(n_layers - start, int)]
            gain = 0.5 if group == "memorized" else 0.0
            prob = np.r_[np.full(n_layers - 1, 0.2), 0.2 + gain] + rng.uniform(0, 0.01)
            rows.append({"group": group, "source": source, "pred_rank": rank,
                         "pred_prob": prob, "pred_token": 5, "is_memorized": group == "memorized",
                         "hard_to_guess": i % 2 == 0 if source == "idioms" else np.nan})
    return pd.DataFrame(rows)


def test_group_claims_on_constructed_two_steps():
    rows = pd.DataFrame(analysis.group_claims("m", _labelled(), "filtered"))
    verdicts = rows.set_index("claim")["verdict"]
    assert verdicts.to_dict() == {
        "promotion_vs_nonmemorized": "supported", "promotion_vs_wikipedia": "supported",
        "boost_vs_nonmemorized": "supported", "boost_vs_wikipedia": "supported",
        "first_layer_rank": "supported"}
    late = pd.DataFrame(analysis.group_claims("m", _labelled(memorized_first=False), "all"))
    assert late.set_index("claim").loc["promotion_vs_wikipedia", "verdict"] == "contradicted"


def test_select_population_keeps_other_sources():
    frame = _labelled(n=10)
    filtered = analysis.select_population(frame, "filtered")
    assert (filtered["source"] == "wikipedia").sum() == 10
    assert (filtered["source"] == "idioms").sum() == 10  # every other idiom
    assert len(analysis.select_population(frame, "all")) == 30
    with pytest.raises(ValueError, match="population"):
        analysis.select_population(frame, "most")


def test_select_population_on_idiom_results_with_idiomems_source_column():
    """IdioMem's own ``source`` (the dictionary: MAGPIE, LIdiom...) is not a row's kind."""
    idioms = pd.DataFrame({"source": ["MAGPIE", "LIdiom", "MAGPIE", "EPIC"],
                           "hard_to_guess": [True, False, True, False], "is_memorized": True})
    assert len(analysis.select_population(idioms, "filtered")) == 2
    labelled = analysis.label_groups(idioms)  # label_groups sets source = "idioms"
    assert len(analysis.select_population(labelled, "filtered")) == 2
    assert len(analysis.select_population(idioms, "all")) == 4


def test_clusters_claim_measures_the_share_in_gaining_clusters():
    idioms = _labelled(n=40).query("source == 'idioms'").reset_index(drop=True)
    row = analysis.clusters_claim("m", idioms, "filtered", n_boot=200)
    assert row["value"] == 100.0 and row["verdict"] == "supported" and row["n"] == 40
    flat = idioms.assign(pred_prob=[np.full(8, 0.3)] * len(idioms))
    none = analysis.clusters_claim("m", flat, "filtered", n_boot=200)
    assert none["value"] == 0.0 and none["verdict"] == "contradicted"


def test_merge_claims_replaces_only_the_same_keys():
    stat = {"value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n": 3}
    old = analysis.claims_frame([
        analysis.claim_row("facts_boost", "m", "all", "logit", stat),
        analysis.claim_row("promotion_vs_wikipedia", "m", "filtered", "logit", stat)])
    new = analysis.claims_frame([
        analysis.claim_row("facts_boost", "m", "all", "logit", {**stat, "value": 2.0})])
    merged = analysis.merge_claims(old, new)
    assert list(merged.columns) == COLUMNS
    assert merged["claim"].tolist() == ["promotion_vs_wikipedia", "facts_boost"]  # CLAIMS order
    assert merged.set_index("claim").loc["facts_boost", "value"] == 2.0
