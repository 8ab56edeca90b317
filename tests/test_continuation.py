"""Greedy whole-word continuation, and the token counting it relies on (memrecall.probes)."""

import pandas as pd
import pytest
from conftest import assert_tokens_match, greedy_reference, near_tie_on_greedy_path

import memrecall as mr
from memrecall.forward.batching import model_inputs
from memrecall.forward.generate import whole_word_continuation
from memrecall.models.tiny import byte_level_bpe
from memrecall.probes import multi_token_fraction, target_token_counts

TEXTS = ["the cat is out of the bag", "kill two birds with one stone",
         "a blessing in disguise", "once in a blue moon qzxjvkpw",
         "every cloud has a silver lining"]


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2"])
def tiny_causal(request):
    return mr.load(request.param, device="cpu")


def test_multi_token_fraction_on_tiny_tokenizer():
    tokenizer = byte_level_bpe()
    single = [w for w in ("the", "of", "and", "to", "a", "in")
              if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert single, "the tiny tokenizer should have some whole common words"
    rare = "qzxjvkpw"  # not in a 600-token vocabulary as one piece
    texts = [f"over {single[0]}", f"over {rare}", f"{rare}", f"under {single[-1]}"]
    assert multi_token_fraction(texts, tokenizer) == pytest.approx(0.5)
    assert multi_token_fraction([f"x {rare}"], tokenizer) == 1.0


def test_whole_word_continuation_matches_unpadded_greedy_decoding(tiny_causal):
    lm = tiny_causal
    probes = mr.make_probes(TEXTS, lm)
    result = whole_word_continuation(lm, probes, batch_size=2)
    counts = target_token_counts(probes, lm.tokenizer)
    assert result["n_target_tokens"].tolist() == counts.tolist()
    assert counts[3] > 1  # the nonsense word needs several pieces
    for i, prompt in enumerate(probes["prompt"]):
        tokens, steps = greedy_reference(lm, prompt, int(counts[i]))
        # padded batches of 2 against the prompt alone: equal up to float ties (conftest)
        assert_tokens_match([result["first_token"].iloc[i]], tokens[:1], steps[:1])
        expected = lm.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        assert result["continuation"].iloc[i] == expected or near_tie_on_greedy_path(steps)
    # Given project's output, the first token is its pred_token (taken, not recomputed).
    projected = mr.project(lm, probes)
    again = whole_word_continuation(lm, projected)
    assert again["first_token"].tolist() == projected["pred_token"].tolist()


def test_target_token_counts_count_the_last_words_pieces(tiny_causal):
    lm = tiny_causal
    probes = mr.make_probes(TEXTS, lm)
    counts = target_token_counts(probes, lm.tokenizer)
    checked = 0
    for text, prompt, count in zip(probes["text"], probes["prompt"], counts, strict=True):
        full = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        head = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if full[: len(head)] == head:  # where the prompt's tokens are a prefix, it is the rest
            assert count == len(full) - len(head)
            checked += 1
    assert checked >= 3, f"only {checked} of {len(TEXTS)} texts could be checked"


def test_whole_word_continuation_rejects_masked_lms():
    lm = mr.load("tiny-bert", device="cpu")
    with pytest.raises(ValueError, match="masked"):
        whole_word_continuation(lm, mr.make_probes(TEXTS[:1], lm))


@pytest.mark.parametrize("bad", [0, -1, "abc", 1.5, True, [2]])
def test_whole_word_continuation_refuses_bad_batch_sizes(bad):
    lm = mr.load("tiny-gpt2", device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
        whole_word_continuation(lm, mr.make_probes(TEXTS[:2], lm), batch_size=bad)


def test_a_prompt_at_the_context_limit_is_refused_with_its_row():
    lm = mr.load("tiny-gpt2", device="cpu")
    limit = lm.max_length
    # a prompt of exactly the window, then a target of several tokens: fits project, not this
    for n in range(limit - 1, 0, -1):
        probes = mr.make_probes(pd.DataFrame({"prompt": ["break the", " ".join(["the"] * n)],
                                              "target": ["ice", "qzxjvkpw"]}), lm)
        if len(model_inputs(lm, [probes.prompt[1]])[0][0]) == limit:
            break
    assert target_token_counts(probes, lm.tokenizer)[1] > 1
    mr.project(lm, probes)  # the prompt itself fits
    with pytest.raises(ValueError, match=r"row 1: .*context window of 128"):
        whole_word_continuation(lm, probes)
