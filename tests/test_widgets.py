"""Per-layer top tokens and the explorer, read through lm.head like memrecall.project."""

import types

import numpy as np
import pytest
import torch

import memrecall as mr
from memrecall import widgets
from memrecall.batching import model_inputs

PROMPTS = ["it's raining cats and", "once in a blue"]


@torch.inference_mode()
def greedy(lm, prompt: str) -> int:
    ids, positions = model_inputs(lm, [prompt])
    logits = lm.model(input_ids=torch.tensor(ids)).logits
    return int(logits[0, positions[0]].argmax())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_layer_top_k_last_layer_is_models_greedy_prediction(tiny, prompt):
    ids, probs = widgets.layer_top_k(tiny, prompt, k=4)
    assert ids.shape == probs.shape == (tiny.n_layers, 4)
    assert ids[-1, 0] == greedy(tiny, prompt)
    assert ids[-1, 0] == mr.project(tiny, [prompt])["pred_token"].iloc[0]
    assert np.all(np.diff(probs, axis=1) <= 1e-7)  # best first
    assert np.all((probs > 0) & (probs <= 1))


def test_layer_top_k_matches_project_probabilities(tiny):
    res = mr.project(tiny, PROMPTS[:1]).iloc[0]
    ids, probs = widgets.layer_top_k(tiny, PROMPTS[0], k=tiny.vocab_size)
    pred = res["pred_token"]
    for layer in range(tiny.n_layers):
        where = int(np.flatnonzero(ids[layer] == pred)[0])
        assert probs[layer, where] == pytest.approx(res["pred_prob"][layer], rel=1e-4, abs=1e-7)
        assert where >= res["pred_rank"][layer]  # ties: project counts in the token's favour


def test_layer_top_tokens_shape_and_labels(tiny):
    table = widgets.layer_top_tokens(tiny, PROMPTS[1], k=3)
    assert table.shape == (tiny.n_layers, 3)
    assert list(table.columns) == ["top 1", "top 2", "top 3"]
    assert table.index.name == "layer" and table.index[0] == 1
    assert table.index[-1] == tiny.n_layers
    assert table.map(lambda cell: cell.endswith(")") and " (" in cell).all().all()


def test_style_top_tokens_renders(tiny):
    ids, _ = widgets.layer_top_k(tiny, PROMPTS[0], k=3)
    html = widgets.style_top_tokens(tiny, PROMPTS[0], k=3, target=int(ids[-1, 0])).to_html()
    assert "font-weight: bold" in html and "background-color" in html


def test_layer_top_k_rejects_bad_k(tiny):
    with pytest.raises(ValueError, match="k must be"):
        widgets.layer_top_k(tiny, PROMPTS[0], k=0)


def test_token_label_shows_spaces():
    tokenizer = types.SimpleNamespace(decode=lambda ids: {1: " eye", 2: " ", 3: "x\n"}[ids[0]])
    assert widgets.token_label(tokenizer, 1) == "␣eye"
    assert widgets.token_label(tokenizer, 2) == "␣"
    assert widgets.token_label(tokenizer, 3) == "x\\n"


@pytest.fixture(scope="module")
def llama_results():
    lm = mr.load("tiny-llama", device="cpu")
    probes = mr.make_probes(["it's raining cats and dogs", "once in a blue moon"], lm)
    return lm, mr.project(lm, probes)


def test_idiom_explorer_updates_on_selection(llama_results):
    lm, results = llama_results
    box = widgets.idiom_explorer(lm, results, k=3)
    dropdown, html = box.children
    assert len(dropdown.options) == 2
    assert "<table" in html.value
    before = html.value
    dropdown.value = 1 - dropdown.value
    assert html.value != before and "blue" in html.value


def test_idiom_explorer_not_interactive_builds_no_widget(llama_results):
    lm, results = llama_results
    note = widgets.idiom_explorer(lm, results, interactive=False)
    assert repr(note) == widgets.BATCH_NOTE  # what the notebook shows, without quotes
    with pytest.raises(ValueError, match="no probes"):
        widgets.idiom_explorer(lm, results.iloc[:0], interactive=False)


def test_example_tables_memorized_first(llama_results):
    lm, results = llama_results
    marked = results.assign(is_memorized=[False, True])
    tables = widgets.example_tables(lm, marked, n_memorized=1, n_other=1, k=2)
    captions = [t.caption for t in tables]
    assert len(captions) == 2
    assert "(memorized)" in captions[0] and "blue" in captions[0]
    assert "(not memorized)" in captions[1]
