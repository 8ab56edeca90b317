"""Notebook helpers: per-layer top tokens, batch-run detection, robust group tests, summary rows."""

import types

import numpy as np
import pandas as pd
import pytest
import torch

import memrecall as mr
from memrecall import analysis, explore
from memrecall.lens import model_inputs

TINY = ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-bert"]
PROMPTS = ["it's raining cats and", "once in a blue"]


@torch.inference_mode()
def greedy(lm, prompt: str) -> int:
    ids, positions = model_inputs(lm, [prompt])
    logits = lm.model(input_ids=torch.tensor(ids)).logits
    return int(logits[0, positions[0]].argmax())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_layer_top_k_last_layer_is_models_greedy_prediction(tiny, prompt):
    ids, probs = explore.layer_top_k(tiny, prompt, k=4)
    assert ids.shape == probs.shape == (tiny.n_layers, 4)
    assert ids[-1, 0] == greedy(tiny, prompt)
    assert ids[-1, 0] == mr.project(tiny, [prompt])["pred_token"].iloc[0]
    assert np.all(np.diff(probs, axis=1) <= 1e-7)  # best first
    assert np.all((probs > 0) & (probs <= 1))


def test_layer_top_k_matches_project_probabilities(tiny):
    res = mr.project(tiny, PROMPTS[:1]).iloc[0]
    ids, probs = explore.layer_top_k(tiny, PROMPTS[0], k=tiny.vocab_size)
    pred = res["pred_token"]
    for layer in range(tiny.n_layers):
        where = int(np.flatnonzero(ids[layer] == pred)[0])
        assert probs[layer, where] == pytest.approx(res["pred_prob"][layer], rel=1e-4, abs=1e-7)
        assert where >= res["pred_rank"][layer]  # ties: project counts in the token's favour


def test_layer_top_tokens_shape_and_labels(tiny):
    table = explore.layer_top_tokens(tiny, PROMPTS[1], k=3)
    assert table.shape == (tiny.n_layers, 3)
    assert list(table.columns) == ["top 1", "top 2", "top 3"]
    assert table.index.name == "layer" and table.index[0] == 1
    assert table.index[-1] == tiny.n_layers
    assert table.map(lambda cell: cell.endswith(")") and " (" in cell).all().all()


def test_style_top_tokens_renders(tiny):
    ids, _ = explore.layer_top_k(tiny, PROMPTS[0], k=3)
    html = explore.style_top_tokens(tiny, PROMPTS[0], k=3, target=int(ids[-1, 0])).to_html()
    assert "font-weight: bold" in html and "background-color" in html


def test_layer_top_k_rejects_bad_k(tiny):
    with pytest.raises(ValueError, match="k must be"):
        explore.layer_top_k(tiny, PROMPTS[0], k=0)


def test_token_label_shows_spaces():
    tokenizer = types.SimpleNamespace(decode=lambda ids: {1: " eye", 2: " ", 3: "x\n"}[ids[0]])
    assert explore.token_label(tokenizer, 1) == "␣eye"
    assert explore.token_label(tokenizer, 2) == "␣"
    assert explore.token_label(tokenizer, 3) == "x\\n"


# --------------------------------------------------------------------------- is_batch_run

ZMQ = type("ZMQInteractiveShell", (), {})()
TERMINAL = type("TerminalInteractiveShell", (), {})()


@pytest.mark.parametrize(("environ", "shell", "expected"), [
    ({}, None, True),  # a plain script
    ({}, TERMINAL, True),  # terminal IPython
    ({}, ZMQ, True),  # a kernel no front end started: papermill, nbconvert
    ({"JPY_SESSION_NAME": "notebooks/03.ipynb"}, ZMQ, False),  # JupyterLab
    ({"VSCODE_PID": "42"}, ZMQ, False),  # VS Code
    ({"JPY_SESSION_NAME": "x", "MEMRECALL_PLAIN_PROGRESS": "1"}, ZMQ, True),  # make reproduce
    ({"MEMRECALL_INTERACTIVE": "1", "MEMRECALL_PLAIN_PROGRESS": "1"}, None, False),
    ({"MEMRECALL_INTERACTIVE": "0", "JPY_SESSION_NAME": "x"}, ZMQ, True),
])
def test_is_batch_run(environ, shell, expected):
    assert explore.is_batch_run(environ, shell=shell) is expected


def test_is_batch_run_under_pytest_is_true(monkeypatch):
    monkeypatch.delenv("MEMRECALL_INTERACTIVE", raising=False)
    assert explore.is_batch_run() is True


# --------------------------------------------------------------------------- tests and verdicts


def table_of(groups: dict[str, list[int]], n_layers: int = 10) -> pd.DataFrame:
    rows = [{"group": g, "promotion_layer": p, "confidence_boost": p / 10, "n_layers": n_layers}
            for g, layers in groups.items() for p in layers]
    return pd.DataFrame(rows, columns=["group", "promotion_layer", "confidence_boost",
                                       "n_layers"])


def test_group_tests_one_based_medians_and_effect_sign():
    table = table_of({"memorized": [1, 2, 2, 3], "non-memorized": [7, 8, 9, 9]})
    tests = explore.group_tests(table, [("memorized", "non-memorized")])
    layer = tests[tests["measure"] == "promotion_layer"].iloc[0]
    assert layer["median_a"] == 3 and layer["median_b"] == 9.5  # 0-based 2 and 8.5, plus 1
    assert layer["rank_biserial"] == -1 and layer["p_value"] < 0.05 and layer["note"] == ""
    boost = tests[tests["measure"] == "confidence_boost"].iloc[0]
    assert boost["median_a"] == pytest.approx(0.2)  # not shifted
    assert layer["mean_a"] == 3 and boost["mean_a"] == pytest.approx(0.2)
    assert "mean 0.2 vs" in explore.verdict(boost)
    assert "earlier than" in explore.verdict(layer, n_layers=10)
    assert "of 10" in explore.verdict(layer, n_layers=10)
    assert "smaller than" in explore.verdict(boost)


@pytest.mark.parametrize("sizes", [(0, 5), (1, 5), (0, 0)])
def test_group_tests_skip_tiny_groups_with_a_note(sizes):
    table = table_of({"memorized": [3] * sizes[0], "non-memorized": [5] * sizes[1]})
    tests = explore.group_tests(table, [("memorized", "non-memorized")])
    assert len(tests) == 2
    assert tests["p_value"].isna().all()
    assert tests["note"].str.startswith("not tested").all()
    assert tests["median_a"].isna().all() == (sizes[0] == 0)
    assert "not tested" in explore.verdict(tests.iloc[0])


def test_verdict_not_significant():
    table = table_of({"a": [1, 5, 3, 7], "b": [2, 6, 4, 8]})
    row = explore.group_tests(table, [("a", "b")], measures=["promotion_layer"]).iloc[0]
    assert "no significant difference" in explore.verdict(row)


def test_group_medians():
    table = table_of({"memorized": [1, 9, 9], "wikipedia": [9]}).assign(
        promotion_depth=0.5, final_prob=0.9)
    medians = explore.group_medians(table)
    assert list(medians.index) == ["memorized", "wikipedia"]
    assert medians.loc["memorized", "median promotion layer (1-based)"] == 10
    assert medians.loc["memorized", "promoted only at the last layer (%)"] == pytest.approx(200 / 3)


# --------------------------------------------------------------------------- summary record


def fake_results(memorized: list[bool], promotion: list[int], n_layers: int = 4) -> pd.DataFrame:
    ranks = [np.array([5] * p + [0] * (n_layers - p)) for p in promotion]
    probs = [np.linspace(0.1, 0.9, n_layers) for _ in promotion]
    return pd.DataFrame({"is_memorized": memorized, "pred_rank": ranks, "pred_prob": probs})


def test_summary_record_is_one_based():
    idioms = fake_results([True, True, False], [0, 2, 3])
    wiki = fake_results([False, False], [3, 3])
    row = explore.summary_record("m", idioms, wiki)
    raw = analysis.summary_row("m", idioms, wiki)
    assert row["median_promotion_layer_1based_memorized"] == raw[
        "median_promotion_layer_memorized"] + 1 == 2
    assert row["median_promotion_layer_1based_wikipedia"] == 4
    assert not any(k.startswith("median_promotion_layer_memorized") for k in row)
    assert row["memorized_pct"] == pytest.approx(66.7)
    assert row["mean_confidence_boost_wikipedia"] == 0
    assert set(row) >= {"model", "n_layers", "n_memorized", "mean_confidence_boost_non_memorized"}


def test_summary_record_without_memorized_is_nan():
    row = explore.summary_record("m", fake_results([False, False], [1, 3]))
    assert np.isnan(row["median_promotion_layer_1based_memorized"])
    assert np.isnan(row["mean_confidence_boost_memorized"])


def test_split_layer():
    table = table_of({"memorized": [2, 3, 4], "non-memorized": [9, 9]}, n_layers=10)
    assert explore.split_layer(table) == 4.0  # median 3, 1-based
    assert explore.split_layer(table, group="non-memorized") is None  # last layer: no line
    assert explore.split_layer(table, group="facts: memorized") is None  # empty group


def test_idiom_explorer_updates_on_selection():
    lm = mr.load("tiny-llama", device="cpu")
    probes = mr.make_probes(["it's raining cats and dogs", "once in a blue moon"], lm)
    results = mr.project(lm, probes)
    box = explore.idiom_explorer(lm, results, k=3)
    dropdown, html = box.children
    assert len(dropdown.options) == 2
    assert "<table" in html.value
    before = html.value
    dropdown.value = 1 - dropdown.value
    assert html.value != before and "blue" in html.value


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
    tests = explore.group_tests(table, [("memorized", "non-memorized")])
    assert explore.two_step_verdict(tests) == expected


def test_two_step_verdict_small_groups():
    table = table_of({"memorized": [1], "non-memorized": [5, 6]})
    tests = explore.group_tests(table, [("memorized", "non-memorized")])
    assert explore.two_step_verdict(tests).startswith("not tested")
    assert explore.two_step_verdict(tests.iloc[:0]).startswith("not tested")
