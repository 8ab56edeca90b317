"""The attention-edge sweep: its configurations, and every row equal to a run of its own."""

import numpy as np
import pandas as pd
import pytest
import torch

import memrecall as mr
from memrecall.analysis import ATTENTION_COLUMNS, attention_table
from memrecall.interventions.attention import blocked_edges, source_positions
from memrecall.interventions.attention_sweep import (
    ATTENTION_KEYS,
    attention_configs,
    attention_sweep,
    attention_windows,
)
from memrecall.interventions.resume import forward, probe_batches

PROMPTS = ["the quick brown fox jumps over the", "kill two birds with one",
           "it is what it", "he decided to bite the"]
# A row of the sweep against the same blocking run on its own: the same sums in another order
# (float32), so probabilities agree to this much; predictions agree unless two logits tie.
PROB_ATOL = 1e-5


def test_windows_and_configurations():
    assert attention_windows(18) == (1, 4) and attention_windows(30) == (1, 6)
    assert attention_windows(4) == (1,)  # 20% of 4 layers rounds to one: no repeat
    configs = attention_configs(5, (1, 2), ("content", "first"))
    assert list(configs.columns) == ATTENTION_KEYS
    assert len(configs) == 2 * (5 + 4)
    assert (configs["end_layer"] - configs["start_layer"] + 1 == configs["window"]).all()
    assert configs["end_layer"].max() == 4
    with pytest.raises(ValueError, match="window sizes"):
        attention_configs(5, (6,))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-gemma3"])
def test_every_row_equals_its_own_blocking_run(name):
    lm = mr.load(name, device="cpu")
    detail = attention_sweep(lm, PROMPTS, windows=(1, 2), max_rows=7)  # many small chunks
    assert len(detail) == len(PROMPTS) * len(attention_configs(lm.n_layers, (1, 2)))
    sources = source_positions(lm, PROMPTS)
    untouched = detail[detail["n_sources"] == 0]
    assert len(untouched)  # "it is what it": stop words only, no content word
    assert (untouched["pred_prob"] == untouched["base_pred_prob"]).all()
    assert not untouched["changed"].any()
    assert detail["changed"].any()  # blocking does move some predictions
    for row in detail.sample(12, random_state=0).itertuples():
        (batch,) = probe_batches(lm, [PROMPTS[row.probe]])
        edges = torch.zeros(1, lm.n_layers, batch.input_ids.shape[1], dtype=torch.bool)
        edges[0, row.start_layer:row.end_layer + 1, sources[row.sources][row.probe]] = True
        assert row.n_sources == len(sources[row.sources][row.probe])
        with torch.no_grad(), blocked_edges(lm, edges, batch.positions):
            logits = lm.head.logits(forward(lm, batch)[0])[0]
        probs = torch.softmax(logits, -1)
        assert abs(float(probs[row.base_pred_token]) - row.pred_prob) < PROB_ATOL
        top = torch.topk(probs, 2).values
        if float(top[0] - top[1]) > PROB_ATOL:  # no near-tie: the same new prediction
            assert int(probs.argmax()) == row.pred_token
    clean = attention_sweep(lm, PROMPTS, windows=(1,), sources=("first",))
    np.testing.assert_array_equal(clean.groupby("probe")["base_pred_prob"].first(),
                                  detail.groupby("probe")["base_pred_prob"].first())


def test_unknown_source_sets_are_refused():
    lm = mr.load("tiny-gpt2", device="cpu")
    with pytest.raises(ValueError, match="unknown source set"):
        attention_sweep(lm, PROMPTS, sources=("nouns",))


def constructed_detail() -> pd.DataFrame:
    """Two groups x 4 probes, one source set, windows of 1 over 3 layers, known read-outs.

    Memorized probes lose half of the prediction's probability at layer 1 (-50%) and change
    there in 2 of 4 probes; nothing happens elsewhere. Probe 3 has no source position.
    """
    rows = []
    for group, probes in (("memorized", range(4)), ("wikipedia", range(4, 8))):
        for probe in probes:
            for start in range(3):
                hit = group == "memorized" and start == 0
                rows.append({"probe": probe, "group": group, "sources": "content", "window": 1,
                             "start_layer": start, "end_layer": start,
                             "n_sources": 0 if probe == 3 else 2, "base_pred_prob": 0.4,
                             "pred_prob": 0.2 if hit else 0.4,
                             "changed": hit and probe in (0, 1)})
    return pd.DataFrame(rows)


def test_attention_table_reads_known_answers():
    table = attention_table(constructed_detail())
    assert list(table.columns) == ATTENTION_COLUMNS
    first = table[(table["group"] == "memorized") & (table["start_layer"] == 1)].iloc[0]
    assert first["end_layer"] == 1 and first["n_probes"] == 3  # probe 3 blocks nothing: out
    assert first["prob_change_rel_pct"] == pytest.approx(-50.0)
    assert first["ci_low"] == pytest.approx(-50.0) and first["ci_high"] == pytest.approx(-50.0)
    assert first["changed_pct"] == pytest.approx(200 / 3)
    rest = table[(table["group"] == "wikipedia") | (table["start_layer"] > 1)]
    assert (rest["prob_change_rel_pct"] == 0).all() and (rest["changed_pct"] == 0).all()
    assert sorted(table["start_layer"].unique()) == [1, 2, 3]  # 1-based
