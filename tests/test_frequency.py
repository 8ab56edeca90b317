"""Table 4's frequency lookup (memrecall.analysis.frequency)."""

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis


class FakeTokenizer:
    vocab = {0: " The", 1: "▁bucket", 2: "##ing", 3: ",", 4: " 1999", 5: "xqzvw"}

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids).replace("▁", " ")


def test_token_word_strips_lowercases_and_drops_non_words():
    tok = FakeTokenizer()
    assert analysis.token_word(tok, 0) == "the"
    assert analysis.token_word(tok, 1) == "bucket"
    assert analysis.token_word(tok, 2) == "ing"
    assert analysis.token_word(tok, 3) is None
    assert analysis.token_word(tok, 4) is None


def test_word_frequencies_offline():
    freqs = analysis.word_frequencies(["the", "bucket", "xqzvw", None])
    assert freqs[0] > freqs[1] > 0
    assert freqs[2] == 0
    assert np.isnan(freqs[3])


def test_rank_frequency_r():
    ranks = np.array([10.0, 20, 30, 40, 50])
    out = analysis.rank_frequency_r(ranks, -ranks / 100)
    assert out["r"] == pytest.approx(-1.0) and out["n"] == 5
    skipped = analysis.rank_frequency_r(ranks, np.array([1.0, np.nan, 3, 4, 5]))
    assert skipped["n"] == 4
    assert np.isnan(analysis.rank_frequency_r(ranks[:2], ranks[:2])["r"])


def test_frequency_table_memorized_and_all():
    res = pd.DataFrame({
        "pred_token": [0, 1, 5, 3, 0, 1],
        "pred_rank": [np.array([5, 0]), np.array([900, 0]), np.array([4000, 0]),
                      np.array([7, 0]), np.array([3, 0]), np.array([800, 0])],
        "is_memorized": [True, True, True, False, False, True],
    })
    table = analysis.frequency_table("tiny", res, FakeTokenizer())
    assert list(table.columns) == analysis.TABLE4_COLUMNS
    assert list(table["subset"]) == ["memorized", "all"]
    assert table.set_index("subset").loc["all", "n"] == 5  # the comma has no word
    assert table.set_index("subset").loc["memorized", "r"] < 0
