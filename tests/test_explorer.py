"""The explorer's browser-free pieces: suggestions, Enter, verdicts, compare, tracked token."""

import numpy as np
import pytest

import memrecall as mr
from memrecall.figures.compare import Comparison
from memrecall.figures.trajectory import drawable, trajectory
from memrecall.jupyter.suggest import resolve, suggest

IDIOMS = ["spill the beans", "spill the tea", "cry over spilled milk", "a landspill at dawn",
          "once in a blue moon"]


def test_suggest_prefix_then_word_start_then_substring_with_a_count():
    found = suggest(IDIOMS, "  SPILL ")
    assert found.shown == ("spill the beans", "spill the tea", "cry over spilled milk",
                           "a landspill at dawn")
    assert found.total == 4 and found.count_label == "4 idioms match"
    assert suggest(IDIOMS, "spill", limit=2).count_label == "2 of 4 idioms match"
    assert suggest(IDIOMS, "blue").count_label == "1 idiom matches"
    assert suggest(IDIOMS, "zebra").count_label == "no idiom matches"
    assert suggest(IDIOMS, "   ").shown == ()


def test_enter_on_a_fragment_picks_the_best_idiom_not_a_split():
    assert resolve(IDIOMS, "spill the") == "spill the beans"  # the first prefix match
    assert resolve(IDIOMS, "spill the", highlighted="spill the tea") == "spill the tea"
    assert resolve(IDIOMS, "Spill  the tea") == "Spill the tea"  # a whole idiom: as typed
    assert resolve(IDIOMS, "over spilled") == "over spilled"  # not a start: taken as typed
    assert resolve(IDIOMS, "the early bird catches") == "the early bird catches"


@pytest.fixture(scope="module")
def gpt2():
    return mr.load("tiny-gpt2", device="cpu")


def test_verdict_says_memorized_only_for_idioms(llama):
    idiom = trajectory(llama, "once in a blue moon")
    other = trajectory(llama, "once in a blue moon", idiom=False)
    assert idiom.verdict in ("memorized", "not memorized")
    assert other.verdict in ("predicted", "not predicted")
    assert "memorized" not in other.title


def test_tracked_token_and_top_k(llama):
    view = trajectory(llama, "once in a blue moon", k=2, track=" cat")
    expected = llama.tokenizer.encode(" cat", add_special_tokens=False)[0]
    assert view.track_token == expected and view.top_ids.shape == (llama.n_layers, 2)
    ranks = view.curves["track_rank"].to_numpy()
    assert ranks.shape == (llama.n_layers,) and (ranks >= 0).all()
    assert np.all(view.curves["track_prob"].between(0, 1))
    table = view.frame()
    assert list(table["layer"]) == list(range(1, llama.n_layers + 1))
    assert {"top1_token", "top2_prob", "track_rank", "tracked"} <= set(table.columns)
    plain = trajectory(llama, "once in a blue moon", track="")
    assert plain.track_token is None and "track_rank" not in plain.curves


def test_compare_draws_both_on_one_layer_axis(llama, gpt2):
    views = [trajectory(llama, "once in a blue moon"), trajectory(gpt2, "spill the beans")]
    comparison = Comparison(views)
    figure = comparison.figure()
    limits = {tuple(ax.get_ylim()) for ax in figure.get_axes()}
    assert len(limits) == 1  # every panel of both views: the same layer axis
    assert len(figure.get_axes()) == 6
    assert comparison.png()[:4] == b"\x89PNG"
    assert len(comparison.frame()) == llama.n_layers + gpt2.n_layers
    with pytest.raises(ValueError, match="two views"):
        Comparison(views[:1])


def test_tokens_the_font_lacks_are_escaped():
    assert drawable("␣moon") == "␣moon"
    assert drawable("一") == "\\u4e00"
    assert drawable("一" * 4, limit=8) == "\\u4e00…" and drawable("␣moon", limit=8) == "␣moon"
