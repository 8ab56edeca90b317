"""The prompt/target split follows the authors' convention for every tokenizer family."""

import pandas as pd
import pytest

import memrecall as mr
from memrecall.data import DataFormatError
from memrecall.forward.batching import model_inputs
from memrecall.models import wrap
from memrecall.models.tiny import build_tiny, gpt2_tokenizer
from memrecall.probes import first_token_after, split_point, target_token_counts

TRICKY = [
    "for crying out loud",
    "it's raining cats and dogs",
    "don't count your chickens",
    "she is a jack-of-all-trades",
    "you can't judge a book by its cover",
    "that is easier said than done",
    "the state-of-the-art system broke down",
    "they said it's the eleventh-hour",
    "we'll cross that bridge when we come to it",
    "it was the straw that broke the camel's back",
]


@pytest.fixture(scope="module")
def real_qwen(qwen_tokenizer):
    """A small random Qwen2 with Qwen2.5-Coder's real tokenizer (from the packaged GGUF)."""
    model, _ = build_tiny("tiny-qwen2")
    model.resize_token_embeddings(len(qwen_tokenizer), mean_resizing=False)
    return wrap(model, qwen_tokenizer, name="qwen2-tokenizer")


@pytest.fixture(scope="module", params=["tiny-qwen2", "real-qwen2"])
def space_token_lm(request):
    """Tokenizers that give the space before a digit a token of its own."""
    if request.param == "real-qwen2":
        return request.getfixturevalue("real_qwen")
    return mr.load(request.param, device="cpu")


@pytest.fixture(scope="module")
def real_gpt2():
    """A small random GPT-2 with the real GPT-2 byte-level BPE tokenizer."""
    tokenizer = gpt2_tokenizer()
    model, _ = build_tiny("tiny-gpt2")
    model.resize_token_embeddings(len(tokenizer))
    return wrap(model, tokenizer, name="gpt2-tokenizer")


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2",
                                        "tiny-bert", "real-gpt2"])
def lm(request, real_gpt2):
    return real_gpt2 if request.param == "real-gpt2" else mr.load(request.param, device="cpu")


def content_ids(lm, text):
    """Token ids of ``text`` without the special tokens the tokenizer adds."""
    ids = lm.tokenizer(text, add_special_tokens=True)["input_ids"]
    special = set(lm.tokenizer.all_special_ids)
    return [i for i in ids if i not in special]


def test_prompt_and_target_are_the_text_split_at_the_last_word(lm):
    probes = mr.make_probes(TRICKY, lm)
    assert list(probes.columns) == ["text", "prompt", "target", "target_token"]
    for text, row in zip(TRICKY, probes.itertuples()):
        prompt, last_word = text.rsplit(" ", 1)
        # The prompt keeps the space where the tokenizer gives it a token of its own (the tiny
        # tokenizers' small vocabularies do before "jack"): the token after the bare prompt.
        after = content_ids(lm, text)[len(content_ids(lm, prompt))]
        spaced = not lm.tokenizer.decode([after]).strip()
        assert (row.text, row.prompt, row.target) == (text, prompt + " " * spaced, last_word)


def test_target_token_is_the_first_sub_token_of_the_last_word(lm):
    probes = mr.make_probes(TRICKY, lm)
    for row in probes.itertuples():
        whole, prompt = content_ids(lm, row.text), content_ids(lm, row.prompt)
        # the prompt's tokens are a prefix of the text's, and the next one is the target
        assert whole[: len(prompt)] == prompt, row.text
        assert whole[len(prompt)] == row.target_token, row.text
        piece = lm.tokenizer.decode([row.target_token]).strip().removeprefix("##")
        assert row.target.lower().startswith(piece.lower()), (row.target, piece)


def test_multi_token_last_words_are_cut_to_their_first_piece(lm):
    probes = mr.make_probes(TRICKY, lm)
    pieces = [len(content_ids(lm, " " + word)) for word in probes.target]
    assert max(pieces) > 1  # the set really has multi-token targets for every tokenizer
    for row, n_pieces in zip(probes.itertuples(), pieces):
        if n_pieces > 1:
            first = lm.tokenizer.decode([row.target_token]).strip().removeprefix("##")
            assert len(first) < len(row.target)


def test_real_gpt2_split_matches_known_token_ids(real_gpt2):
    probes = mr.make_probes(["for crying out loud", "turn a blind eye"], real_gpt2)
    # GPT-2 BPE ids of " loud" and " eye"
    assert probes.target_token.tolist() == [7812, 4151]
    assert probes.prompt.tolist() == ["for crying out", "turn a blind"]


def test_surrounding_whitespace_is_ignored(lm):
    probes = mr.make_probes(["  break the   ice \n"], lm)
    assert probes.prompt[0] == "break the" and probes.target[0] == "ice"


def test_facts_frame_is_taken_as_given(lm):
    facts = pd.DataFrame({"prompt": ["The capital of France is", "Vinson Massif is located in"],
                          "target": ["Paris", "the continent of Antarctica"],
                          "relation_id": ["P36", "P30"]})
    probes = mr.make_probes(facts, lm)
    # (a trailing space only where the tokenizer gives it a token: the tiny ones before "Paris")
    assert probes.prompt.str.rstrip().tolist() == facts.prompt.tolist()
    assert probes.target.tolist() == facts.target.tolist()
    assert probes.relation_id.tolist() == ["P36", "P30"]
    for row in probes.itertuples():
        whole, prompt = content_ids(lm, row.text), content_ids(lm, row.prompt)
        assert whole[len(prompt)] == row.target_token
    assert probes.text[1] == "Vinson Massif is located in the continent of Antarctica"


@pytest.mark.parametrize("texts, match", [
    (["break the ice", ""], "row 1"),
    (["break the ice", "   "], "row 1"),
    (["hello"], "row 0"),
])
def test_unusable_texts_name_the_row(texts, match):
    lm = mr.load("tiny-gpt2", device="cpu")
    with pytest.raises(DataFormatError, match=match):
        mr.make_probes(texts, lm)


def test_frames_without_prompt_and_target_are_refused():
    lm = mr.load("tiny-gpt2", device="cpu")
    with pytest.raises(DataFormatError, match="prompt"):
        mr.make_probes(pd.DataFrame({"idiom": ["break the ice"]}), lm)
    with pytest.raises(DataFormatError, match="row 0: empty target"):
        mr.make_probes(pd.DataFrame({"prompt": ["a b"], "target": [" "]}), lm)


def test_first_token_after_the_boundary():
    # "break the ice": prompt ends at 9; special tokens are skipped
    bos, the, ice = (0, 0), (5, 9), (9, 13)
    assert first_token_after([bos, (0, 5), the, ice], [1, 0, 0, 0], 9) == 3
    # a SentencePiece "▁" alone (the space before the word) starts the word
    assert first_token_after([(0, 5), (5, 9), (9, 10), (10, 13)], None, 9) == 2
    # a zero-width byte-level "Ġ" at the boundary starts the word too
    assert first_token_after([(0, 5), (5, 9), (9, 9), (10, 13)], None, 9) == 2
    with pytest.raises(IndexError):
        first_token_after([(0, 5), (5, 9)], None, 9)


def test_token_counts_start_at_the_target_token(lm):
    """make_probes and target_token_counts apply the same boundary rule."""
    probes = mr.make_probes(TRICKY, lm)
    counts = target_token_counts(probes, lm.tokenizer)
    for row, count in zip(probes.itertuples(), counts, strict=True):
        ids = content_ids(lm, row.text)
        assert ids[len(ids) - count] == row.target_token, row.text


def test_split_point_gives_a_whitespace_token_to_the_prompt():
    text = "catch 22"  # the word starts at 6
    # Qwen2 / SmolLM2 / Gemma: catch, " ", 2, 2 -> the target is "2", the prompt keeps the space
    assert split_point([(0, 5), (5, 6), (6, 7), (7, 8)], None, text, 6) == (2, 6)
    # trimmed byte-level offsets: a zero-width lone "Ġ" carries no character either
    assert split_point([(0, 5), (6, 6), (6, 7), (7, 8)], None, text, 6) == (2, 6)
    # the space inside the word's token (untrimmed "Ġ22", SentencePiece "▁22" or trimmed)
    assert split_point([(0, 5), (5, 8)], None, text, 6) == (1, 5)
    assert split_point([(0, 5), (6, 8)], None, text, 6) == (1, 5)
    # special tokens (BOS) are skipped
    assert split_point([(0, 0), (0, 5), (5, 6), (6, 8)], [1, 0, 0, 0], text, 6) == (3, 6)
    with pytest.raises(IndexError):
        split_point([(0, 5), (5, 6)], None, "catch ", 6)


def test_a_space_token_before_the_word_belongs_to_the_prompt(space_token_lm):
    lm = space_token_lm
    texts = ["it is a catch 22", "the river flooded in 1998"]
    probes = mr.make_probes(texts, lm)
    assert probes.prompt.tolist() == ["it is a catch ", "the river flooded in "]
    assert probes.target.tolist() == ["22", "1998"]
    assert [lm.tokenizer.decode([t]) for t in probes.target_token] == ["2", "1"]
    for row in probes.itertuples():
        whole = content_ids(lm, row.text)
        prompt = model_inputs(lm, [row.prompt])[0][0]  # what the lens feeds the model
        assert whole[: len(prompt)] == prompt  # the space token is the last one it reads
        assert lm.tokenizer.decode(prompt[-1:]) == " "
        assert whole[len(prompt)] == row.target_token
    assert target_token_counts(probes, lm.tokenizer).tolist() == [2, 4]


def test_runs_of_whitespace_are_collapsed(space_token_lm):
    lm = space_token_lm
    probes = mr.make_probes(["a  blessing\tin \n disguise", "the cat is out of the  bag"], lm)
    assert probes.text.tolist() == ["a blessing in disguise", "the cat is out of the bag"]
    assert probes.prompt.tolist() == ["a blessing in", "the cat is out of the"]
    for row in probes.itertuples():
        # the target token carries the word (with its space), never a double-space token
        piece = lm.tokenizer.decode([row.target_token])
        assert piece.startswith(" ") and row.target.startswith(piece.strip()), piece


def test_facts_with_a_number_for_target_keep_the_space(space_token_lm):
    facts = pd.DataFrame({"prompt": ["The river flooded the  valley in"], "target": ["1998"]})
    probes = mr.make_probes(facts, space_token_lm)
    assert probes.prompt[0] == "The river flooded the valley in "
    assert probes.text[0] == "The river flooded the valley in 1998"
    assert space_token_lm.tokenizer.decode([probes.target_token[0]]) == "1"


def test_nfc_and_nfd_spellings_give_one_probe(lm):
    import unicodedata

    composed, decomposed = (unicodedata.normalize(form, "meet me at the café") for form in
                            ("NFC", "NFD"))
    assert composed != decomposed
    one, other = mr.make_probes([composed], lm), mr.make_probes([decomposed], lm)
    pd.testing.assert_frame_equal(one, other)
    assert one.text[0] == composed and one.target[0] == "café"
    facts = pd.DataFrame({"prompt": ["we met at the"] * 2, "target": [composed[-4:],
                                                                      decomposed[-5:]]})
    probes = mr.make_probes(facts, lm)
    assert probes.target.tolist() == ["café", "café"] and probes.target_token.nunique() == 1


def test_a_lone_surrogate_is_refused_with_its_row(lm):
    with pytest.raises(DataFormatError, match=r"row 1: .*lone surrogate"):
        mr.make_probes(["break the ice", "a b \ud800 c"], lm)
    facts = pd.DataFrame({"prompt": ["fine", "we met \udc80 at the"], "target": ["x", "y"]},
                         dtype=object)
    with pytest.raises(DataFormatError, match=r"row 1 .*prompt.*lone surrogate"):
        mr.make_probes(facts, lm)
