"""Integration: the real packaged models (GGUF, dequantised) on all of IdioMem."""

import numpy as np
import pytest
import torch
from conftest import assert_tokens_match

import memrecall as mr
from memrecall.forward.batching import model_inputs
from memrecall.models.packaged import PACKAGED_GGUF

pytestmark = pytest.mark.slow

REAL_TIE_EPS = 1e-3
"""conftest.TIE_EPS for the real models: logits of magnitude ~10-30 from hidden sizes of 576-896
round to ~1e-5 between float32 forwards of other shapes; ten times the tiny models' allowance."""

# name -> plausible range of the memorized fraction on IdioMem. For reference, independent
# one-prompt-at-a-time runs measured about 49% for Gemma 3 270M, 16% for SmolLM2 135M and 11.9%
# (101 of 852) for Qwen2.5-Coder 0.5B.
PACKAGED = {"gemma-3-270m": (0.35, 0.65), "smollm2-135m": (0.08, 0.30),
            "qwen2.5-coder-0.5b": (0.06, 0.20)}


@pytest.fixture(scope="module", params=list(PACKAGED))
def run(request, data_dir, monkeypatch_module):
    monkeypatch_module.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    lm = mr.load(request.param, device="cpu")
    probes = mr.make_probes(mr.load_idiomem()["idiom"], lm)
    return request.param, lm, probes, mr.project(lm, probes)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_memorized_fraction_is_plausible(run):
    name, lm, probes, res = run
    fraction = res.is_memorized.mean()
    print(f"\n{name}: {res.is_memorized.sum()}/{len(res)} IdioMem idioms memorized "
          f"({fraction:.1%})")
    low, high = PACKAGED[name]
    assert len(res) == 852
    assert low < fraction < high
    assert lm.weights == f"gguf-sha256:{PACKAGED_GGUF[name].sha256}"  # in every cache key


def test_last_layer_is_the_models_own_output(run):
    name, lm, probes, res = run
    assert all(ranks[-1] == 0 for ranks in res.pred_rank)
    rows = np.random.default_rng(0).choice(len(probes), size=16, replace=False)
    sample = probes.iloc[rows].reset_index(drop=True)
    single = mr.project(lm, sample, batch_size=1)  # same shapes as the model's own forward
    ids, positions = model_inputs(lm, sample.prompt.tolist())
    own = []
    for row, (tokens, position) in enumerate(zip(ids, positions)):
        with torch.inference_mode():
            logits = lm.model(input_ids=torch.tensor([tokens])).logits[0, position].float()
        own.append(logits)
        # float64: a float32 softmax over 262k logits is itself off by ~1e-5
        probs = torch.softmax(logits.double(), -1)
        # the lens's head against the model's own: equal up to float ties (REAL_TIE_EPS)
        assert_tokens_match([single.pred_token[row]], [int(logits.argmax())], logits[None],
                            REAL_TIE_EPS)
        assert abs(single.pred_prob[row][-1] - probs[single.pred_token[row]].item()) < 1e-5
        target = sample.target_token[row]
        assert abs(single.target_prob[row][-1] - probs[target].item()) < 1e-5
    # Batching changes matmul shapes, hence float rounding (ties within REAL_TIE_EPS), nothing else.
    batched = res.iloc[rows].reset_index(drop=True)
    assert_tokens_match(batched.pred_token.to_numpy(), single.pred_token.to_numpy(),
                        torch.stack(own), REAL_TIE_EPS)
    for column in ("pred_prob", "target_prob"):
        np.testing.assert_allclose(np.stack(batched[column]), np.stack(single[column]), atol=1e-4)


def test_independent_naive_split_agrees(run):
    """The authors' recipe written out plainly: tokenize the idiom, walk back to the first token
    that carries a character of the last word, predict greedily from everything before it (a
    token holding only the space before the word, if any, included)."""
    name, lm, probes, res = run
    tokenizer = lm.tokenizer
    for row in range(0, len(probes), 17):
        idiom = probes.text[row]
        encoding = tokenizer(idiom, return_offsets_mapping=True)
        last_word_start = idiom.rindex(" ") + 1
        index = next(i for i, (s, e) in enumerate(encoding["offset_mapping"])
                     if e > last_word_start and e > s)
        ids = encoding["input_ids"][:index]
        with torch.inference_mode():
            predicted = int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        assert encoding["input_ids"][index] == probes.target_token[row], idiom
        assert predicted == res.pred_token[row], idiom
