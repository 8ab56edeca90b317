"""The paper's Wikipedia control: texts length-matched to IdioMem (memrecall.data.wikitext)."""

from collections import Counter

import pytest

import memrecall as mr
from memrecall.data import wikitext


def _idiom_lengths(data_dir):
    return mr.load_idiomem(data_dir / "idiomem" / "idiomem.jsonl")["idiom"].str.split().str.len()


def test_histogram_equals_idiomem(data_dir):
    lengths = _idiom_lengths(data_dir)
    wiki = mr.load_wiki(n=len(lengths), path=data_dir / "wikitext-2" / "test.txt")
    assert Counter(wiki["text"].str.split().str.len()) == Counter(lengths)
    assert (wiki["text"].str.split().str.len() == wiki["n_words"]).all()


def test_scaled_histogram_and_real_last_words(data_dir):
    lengths = _idiom_lengths(data_dir)
    wiki = mr.load_wiki(n=300, seed=3, path=data_dir / "wikitext-2" / "test.txt")
    counts = Counter(wiki["n_words"])
    for n_words, count in Counter(lengths).items():
        assert abs(counts[n_words] - count * 300 / len(lengths)) < 1
    assert sum(counts.values()) == 300 and wiki["text"].is_unique
    last = wiki["text"].str.split().str[-1]
    assert last.str.fullmatch(r"[^\W\d_]+(?:['’-][^\W\d_]+)*").all()
    again = mr.load_wiki(n=300, seed=3, path=data_dir / "wikitext-2" / "test.txt")
    assert again.equals(wiki)
    other = mr.load_wiki(n=300, seed=4, path=data_dir / "wikitext-2" / "test.txt")
    assert not other["text"].equals(wiki["text"])


def test_whole_sentences_stay_available(data_dir):
    wiki = mr.load_wiki(n=50, path=data_dir / "wikitext-2" / "test.txt", control="sentences")
    assert wiki["n_words"].between(5, 25).all()
    with pytest.raises(ValueError, match="control"):
        mr.load_wiki(n=5, control="whole")


def test_prefix_rules():
    assert wikitext.sentence_prefix("The cat sat on the mat.", 3) == "The cat sat"
    assert wikitext.sentence_prefix("The cat, the dog and me.", 2) is None  # "cat,"
    assert wikitext.sentence_prefix("In 1999 they won.", 2) is None  # a number
    assert wikitext.sentence_prefix("It is well-known today", 3) == "It is well-known"
    assert wikitext.sentence_prefix("Too short", 3) is None
    assert wikitext.sentence_prefix("A <unk> word here", 3) is None


def test_scaled_counts_sum_and_identity():
    lengths = [4] * 5 + [5] * 3 + [9]
    assert wikitext.scaled_counts(lengths, 9) == {4: 5, 5: 3, 9: 1}
    scaled = wikitext.scaled_counts(lengths, 20)
    assert sum(scaled.values()) == 20 and scaled[4] == 11


def test_length_matched_fails_loudly_without_enough_sentences():
    starts = [("One two three four", 0), ("Five six seven eight nine", 1)]
    with pytest.raises(ValueError, match="only 1 sentences"):
        wikitext.length_matched(starts, {5: 2})
