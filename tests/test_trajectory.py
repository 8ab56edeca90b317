"""One text through the lens: top-k per layer and the prediction's and target's curves."""

import dataclasses
import types

import numpy as np
import pytest
import torch
from conftest import assert_ranks_match, assert_tokens_match

import memrecall as mr
from memrecall import lenses
from memrecall.data import DataFormatError
from memrecall.figures import trajectory as tj
from memrecall.forward.batching import model_inputs

PROMPTS = ["it's raining cats and", "once in a blue"]
TEXTS = ["it's raining cats and dogs", "once in a blue moon"]


@torch.inference_mode()
def greedy(lm, prompt: str) -> int:
    ids, positions = model_inputs(lm, [prompt])
    logits = lm.model(input_ids=torch.tensor(ids)).logits
    return int(logits[0, positions[0]].argmax())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_layer_top_k_last_layer_is_models_greedy_prediction(tiny, prompt):
    ids, probs = lenses.layer_top_k(tiny, prompt, k=4)
    assert ids.shape == probs.shape == (tiny.n_layers, 4)
    assert ids[-1, 0] == greedy(tiny, prompt)
    assert ids[-1, 0] == mr.project(tiny, [prompt])["pred_token"].iloc[0]
    assert np.all(np.diff(probs, axis=1) <= 1e-7)  # best first
    assert np.all((probs > 0) & (probs <= 1))


def test_layer_top_k_matches_project_probabilities(tiny):
    res = mr.project(tiny, PROMPTS[:1]).iloc[0]
    ids, probs = lenses.layer_top_k(tiny, PROMPTS[0], k=tiny.vocab_size)
    pred = res["pred_token"]
    for layer in range(tiny.n_layers):
        where = int(np.flatnonzero(ids[layer] == pred)[0])
        assert probs[layer, where] == pytest.approx(res["pred_prob"][layer], rel=1e-4, abs=1e-7)
        assert where >= res["pred_rank"][layer]  # ties: project counts in the token's favour


def test_layer_top_k_rejects_bad_k(tiny):
    with pytest.raises(ValueError, match="k must be"):
        lenses.layer_top_k(tiny, PROMPTS[0], k=0)


def test_token_label_shows_spaces():
    tokenizer = types.SimpleNamespace(decode=lambda ids: {1: " eye", 2: " ", 3: "x\n"}[ids[0]])
    assert tj.token_label(tokenizer, 1) == "␣eye"
    assert tj.token_label(tokenizer, 2) == "␣"
    assert tj.token_label(tokenizer, 3) == "x\\n"


def test_trajectory_curves_are_projects_numbers(tiny):
    """Same split as make_probes, same ranks and probabilities as project, for every layer."""
    view = tj.trajectory(tiny, TEXTS[1] + "  ", k=3)
    probe = mr.make_probes([TEXTS[1]], tiny)
    res = mr.project(tiny, probe).iloc[0]
    assert (view.text, view.prompt, view.target) == (res["text"], res["prompt"], res["target"])
    # a whole-vocabulary matmul against project's tiled head: equal up to float ties (conftest)
    logits = lenses.layer_logits(tiny, view.prompt).float()
    assert view.target_token == res["target_token"]
    assert_tokens_match([view.pred_token], [res["pred_token"]], logits[-1:])
    if view.pred_token == res["pred_token"]:
        assert view.is_memorized == res["is_memorized"]
        assert_ranks_match(view.curves["pred_rank"], res["pred_rank"], logits, view.pred_token)
    assert list(view.curves.index) == list(range(1, tiny.n_layers + 1))
    assert_ranks_match(view.curves["target_rank"], res["target_rank"], logits, view.target_token)
    for column in ("pred_prob", "target_prob"):
        np.testing.assert_allclose(view.curves[column], res[column], rtol=1e-4, atol=1e-7)
    assert view.curves["pred_rank"].iloc[-1] == 0
    assert view.top_ids[-1, 0] == view.pred_token
    assert view.table.shape == view.top_labels.shape == (tiny.n_layers, 3)
    assert 1 <= view.promotion_layer <= tiny.n_layers


def test_trajectory_rejects_one_word(tiny):
    with pytest.raises(DataFormatError, match="one word"):
        tj.trajectory(tiny, "moon")


def test_trajectory_applies_a_lens_to_every_layer_but_the_last():
    """A fitted lens (anything with ``transform``) changes the inner layers, not the output."""
    lm = mr.load("tiny-llama", device="cpu")

    class Shift:
        label = "shift"

        def check(self, lm):
            pass

        def transform(self, hidden):
            moved = hidden.clone()
            moved[:-1] = moved[:-1] * -3.0
            return moved

    plain, shifted = tj.trajectory(lm, TEXTS[0]), tj.trajectory(lm, TEXTS[0], lens=Shift())
    assert shifted.lens == "shift" and plain.lens == lenses.LogitLens.label
    inner = slice(0, -1)
    assert not np.allclose(plain.curves["pred_prob"].iloc[inner],
                           shifted.curves["pred_prob"].iloc[inner])
    assert plain.curves.iloc[-1].equals(shifted.curves.iloc[-1])


def test_trajectory_picture_is_a_png_and_saves(tmp_path):
    lm = mr.load("tiny-gpt2", device="cpu")
    view = tj.trajectory(lm, "a $5 bill in the $$ jar", k=2)  # dollars: not mathtext
    png = view._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    saved = view.save(tmp_path / "example.png")
    assert saved == tmp_path / "example.png" and saved.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "example.pdf").is_file()
    assert len(view.figure().axes) == 3  # the table, rank, probability


def test_picture_boxes_every_target_cell():
    lm = mr.load("tiny-gpt2", device="cpu")
    view = tj.trajectory(lm, TEXTS[1], k=3)
    ids = np.where(view.top_ids == view.target_token, -1, view.top_ids)
    ids[[0, -1], [2, 0]] = view.target_token  # the target in exactly two cells
    table = dataclasses.replace(view, top_ids=ids).figure().axes[0]
    assert len(table.patches) == 2 * 2  # each: a coloured box and a white one inside
    bold = [t for t in table.texts if t.get_fontweight() == "bold"]
    assert len(bold) == 2
