"""Tests of memrecall.analysis on hand-made projection results."""

import numpy as np
import pandas as pd
import pytest

from memrecall import analysis
from memrecall.models.tiny import byte_level_bpe


def fake_results(n: int, n_layers: int, memorized: float, seed: int = 0,
                 promote_at: int | None = None) -> pd.DataFrame:
    """Rows like memrecall.project output; ranks reach 0 at ``promote_at`` (random if None)."""
    rng = np.random.default_rng(seed)
    ranks, probs = [], []
    for _ in range(n):
        start = rng.integers(0, n_layers) if promote_at is None else promote_at
        rank = rng.integers(1, 500, n_layers)
        rank[start:] = 0
        ranks.append(rank)
        probs.append(np.linspace(0.01, rng.uniform(0.2, 0.9), n_layers).astype(np.float32))
    return pd.DataFrame({
        "prompt": [f"p{i}" for i in range(n)],
        "is_memorized": rng.random(n) < memorized,
        "pred_rank": ranks, "pred_prob": probs,
        "target_rank": ranks, "target_prob": probs,
    })


@pytest.mark.parametrize(("ranks", "expected"), [
    ([[5, 0, 3, 0, 0]], [3]),
    ([[0, 0, 0]], [0]),
    ([[7, 7, 7, 0]], [3]),
    ([[0, 2, 0, 0], [1, 0, 0, 0]], [2, 1]),
])
def test_promotion_layer(ranks, expected):
    assert analysis.promotion_layer(np.array(ranks)).tolist() == expected


def test_promotion_layer_accepts_a_column_and_rejects_unfinished_rows():
    column = pd.Series([np.array([3, 0]), np.array([0, 0])])
    assert analysis.promotion_layer(column).tolist() == [1, 0]
    with pytest.raises(ValueError, match="rank 0"):
        analysis.promotion_layer(np.array([[0, 0], [0, 4]]))


def test_confidence_boost():
    probs = np.array([[0.1, 0.2, 0.5, 0.9], [0.3, 0.3, 0.4, 0.4]])
    boost = analysis.confidence_boost(probs, np.array([1, 3]))
    np.testing.assert_allclose(boost, [0.7, 0.0])


def test_normalised_depth():
    np.testing.assert_allclose(analysis.normalised_depth(4), [0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError):
        analysis.normalised_depth(0)


def test_label_groups_keeps_wiki_rows_as_wikipedia():
    idioms = fake_results(10, 5, memorized=0.5, seed=1)
    wiki = fake_results(4, 5, memorized=1.0, seed=2)
    labelled = analysis.label_groups(idioms, wiki)
    assert len(labelled) == 14
    expected = np.where(idioms["is_memorized"], "memorized", "non-memorized").tolist()
    assert labelled["group"].tolist() == expected + ["wikipedia"] * 4
    assert labelled["is_memorized"].tail(4).all()
    assert labelled.index.tolist() == list(range(14))
    facts = analysis.label_groups(idioms, facts_res=wiki)
    assert set(facts["group"].tail(4)) == {"facts: memorized"}


def test_per_example_table():
    frame = pd.DataFrame({"pred_rank": [np.array([4, 0, 0, 0]), np.array([0, 0, 0, 0])],
                          "pred_prob": [np.array([0.1, 0.2, 0.3, 0.6]), np.full(4, 0.5)]})
    table = analysis.per_example_table(frame)
    assert table["promotion_layer"].tolist() == [1, 0]
    np.testing.assert_allclose(table["promotion_depth"], [0.5, 0.25])
    np.testing.assert_allclose(table["confidence_boost"], [0.4, 0.0])
    assert "promotion_layer" not in frame.columns  # the input is not modified


def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 2000):
        values = rng.normal(5, 2, size=(n, 1))
        mean, lo, hi = analysis.bootstrap_mean_ci(values)
        assert lo[0] < mean[0] < hi[0]
        assert lo[0] < 5 < hi[0]
        widths.append(hi[0] - lo[0])
    assert widths[1] < widths[0] / 5  # ~ 1/sqrt(100) = 10x narrower
    again = analysis.bootstrap_mean_ci(values)
    assert again[1][0] == lo[0]  # seeded: reproducible


def test_layer_summary_shape_layers_and_order():
    frame = analysis.label_groups(fake_results(40, 6, 0.5), fake_results(10, 6, 0.0, seed=3))
    summary = analysis.layer_summary(frame, "pred_prob")
    assert list(summary.columns) == analysis.SUMMARY_COLUMNS
    assert len(summary) == 3 * 6
    assert summary["group"].unique().tolist() == list(analysis.GROUPS)
    assert summary["layer"].unique().tolist() == [1, 2, 3, 4, 5, 6]
    assert (summary["lo"] <= summary["mean"] + 1e-12).all()
    assert (summary["mean"] <= summary["hi"] + 1e-12).all()
    wiki = summary[summary["group"] == "wikipedia"]
    assert (wiki["n"] == 10).all()
    expected = np.stack(frame.loc[frame["group"] == "wikipedia", "pred_prob"]).mean(0)
    np.testing.assert_allclose(wiki["mean"], expected, rtol=1e-6)
    assert (summary["statistic"] == "mean").all()


def test_layer_summary_ranks_use_geometric_mean():
    frame = pd.DataFrame({"group": ["a", "a"],
                          "pred_rank": [np.array([9, 0]), np.array([999, 0])]})
    summary = analysis.layer_summary(frame, "pred_rank")
    # geometric mean of (rank + 1) = sqrt(10 * 1000) = 100, minus 1
    np.testing.assert_allclose(summary["mean"], [99.0, 0.0])
    assert (summary["statistic"] == "geometric mean").all()
    arithmetic = analysis.layer_summary(frame, "pred_rank", log=False)
    np.testing.assert_allclose(arithmetic["mean"], [504.0, 0.0])


def test_compare_groups_separated_vs_identical():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0, 1, 100), rng.normal(5, 1, 100)
    separated = analysis.compare_groups(low, high)
    assert separated["p_value"] < 1e-10
    assert separated["rank_biserial"] == pytest.approx(-1.0, abs=0.01)
    assert analysis.compare_groups(high, low)["rank_biserial"] == pytest.approx(1.0, abs=0.01)
    same = analysis.compare_groups(low, low)
    assert same["p_value"] > 0.9
    assert same["rank_biserial"] == pytest.approx(0.0)
    assert separated["n_a"] == 100 and separated["median_b"] > 4
    with pytest.raises(ValueError):
        analysis.compare_groups([], [1.0])


def test_compare_table_rows_per_other_group():
    frame = analysis.label_groups(fake_results(60, 5, 0.5), fake_results(20, 5, 0.0, seed=4))
    table = analysis.compare_table(analysis.per_example_table(frame), "promotion_layer")
    assert table["other"].tolist() == ["non-memorized", "wikipedia"]
    assert table["p_value"].between(0, 1).all()


def test_summary_row():
    idioms = fake_results(20, 8, 0.25, promote_at=2)
    late = np.array([3] * 6 + [0, 0])
    pairs = zip(idioms["pred_rank"], idioms["is_memorized"], strict=True)
    idioms["pred_rank"] = [rank if memorized else late for rank, memorized in pairs]
    wiki = fake_results(5, 8, 0.0, promote_at=7)
    row = analysis.summary_row("fake", idioms, wiki)
    n_mem = int(idioms["is_memorized"].sum())
    assert row["model"] == "fake" and row["n_layers"] == 8 and row["n_idioms"] == 20
    assert row["n_memorized"] == n_mem
    assert row["memorized_pct"] == pytest.approx(100 * n_mem / 20)
    assert row["median_promotion_layer_memorized"] == 2
    assert row["median_promotion_layer_non_memorized"] == 6
    assert row["median_promotion_layer_wikipedia"] == 7
    assert row["median_promotion_depth_wikipedia"] == 1.0
    assert row["n_wikipedia"] == 5


def test_suggest_split_layer_is_one_based():
    table = analysis.per_example_table(
        analysis.label_groups(fake_results(10, 6, 1.0, promote_at=2)))
    assert analysis.suggest_split_layer(table) == 3.0


def test_multi_token_fraction_on_tiny_tokenizer():
    tokenizer = byte_level_bpe()
    single = [w for w in ("the", "of", "and", "to", "a", "in")
              if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert single, "the tiny tokenizer should have some whole common words"
    rare = "qzxjvkpw"  # not in a 600-token vocabulary as one piece
    texts = [f"over {single[0]}", f"over {rare}", f"{rare}", f"under {single[-1]}"]
    assert analysis.multi_token_fraction(texts, tokenizer) == pytest.approx(0.5)
    assert analysis.multi_token_fraction([f"x {rare}"], tokenizer) == 1.0


# --------------------------------------------------------------------------- memorization split


def test_memorization_by_source_and_flags():
    frame = pd.DataFrame({"source": ["A", "A", "B", "B", "B"],
                          "flag": [True, False, True, True, False],
                          "is_memorized": [True, False, True, True, False]})
    table = analysis.memorization_by(frame, ["source", "flag"])
    assert table["column"].tolist() == ["source", "source", "flag", "flag"]
    by = table.set_index(["column", "value"])
    assert by.loc[("source", "B"), "n_memorized"] == 2
    assert by.loc[("source", "A"), "memorized_pct"] == pytest.approx(50.0)
    assert by.loc[("flag", True), "memorized_pct"] == pytest.approx(100.0)
    assert by.loc[("flag", False), "n"] == 2


def test_pairwise_agreement_counts_and_kappa():
    matrix = pd.DataFrame({"a": [True, True, False, False], "b": [True, False, False, False],
                           "c": [True, True, False, False]})
    table = analysis.pairwise_agreement(matrix).set_index(["model_a", "model_b"])
    row = table.loc[("a", "b")]
    assert [row["both"], row["only_a"], row["only_b"], row["neither"]] == [1, 1, 0, 2]
    assert row["agreement"] == pytest.approx(0.75)
    assert row["jaccard"] == pytest.approx(0.5)
    # po = .75, pe = .5 * .25 + .5 * .75 = .5 -> kappa = .5
    assert row["kappa"] == pytest.approx(0.5)
    assert table.loc[("a", "c"), "kappa"] == pytest.approx(1.0)
    assert len(table) == 3


def test_memorization_matrix_aligns_by_text():
    one = pd.DataFrame({"text": ["x", "y", "z"], "is_memorized": [True, False, True]})
    two = pd.DataFrame({"text": ["z", "x"], "is_memorized": [False, True]})
    matrix = analysis.memorization_matrix({"m1": one, "m2": two})
    assert list(matrix.columns) == ["m1", "m2"]
    assert matrix.loc["z"].tolist() == [True, False]
    assert "y" not in matrix.index


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def tiny_causal(request):
    import memrecall as mr
    return mr.load(request.param, device="cpu")


TEXTS = ["the cat is out of the bag", "kill two birds with one stone",
         "a blessing in disguise", "once in a blue moon qzxjvkpw",
         "every cloud has a silver lining"]


def _greedy_one_at_a_time(lm, prompt: str, n: int) -> list[int]:
    import torch

    from memrecall.lens import model_inputs

    ids = model_inputs(lm, [prompt])[0][0]
    out = []
    with torch.inference_mode():
        for _ in range(n):
            logits = lm.model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
    return out


def test_whole_word_continuation_matches_unpadded_greedy_decoding(tiny_causal):
    import memrecall as mr

    lm = tiny_causal
    probes = mr.make_probes(TEXTS, lm)
    result = analysis.whole_word_continuation(lm, probes, batch_size=2)
    counts = analysis.target_token_counts(probes, lm.tokenizer)
    assert result["n_target_tokens"].tolist() == counts.tolist()
    assert counts[3] > 1  # the nonsense word needs several pieces
    for i, prompt in enumerate(probes["prompt"]):
        tokens = _greedy_one_at_a_time(lm, prompt, int(counts[i]))
        assert result["first_token"].iloc[i] == tokens[0]
        assert result["continuation"].iloc[i] == lm.tokenizer.decode(
            tokens, skip_special_tokens=True).strip()
    # Given project's output, the first token is its pred_token.
    projected = mr.project(lm, probes)
    again = analysis.whole_word_continuation(lm, projected)
    assert again["first_token"].tolist() == projected["pred_token"].tolist()


def test_target_token_counts_count_the_last_words_pieces(tiny_causal):
    import memrecall as mr

    lm = tiny_causal
    probes = mr.make_probes(TEXTS, lm)
    counts = analysis.target_token_counts(probes, lm.tokenizer)
    for text, prompt, count in zip(probes["text"], probes["prompt"], counts):
        full = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        head = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if full[: len(head)] == head:  # where the prompt's tokens are a prefix, it is the rest
            assert count == len(full) - len(head)


def test_whole_word_continuation_rejects_masked_lms():
    import memrecall as mr

    lm = mr.load("tiny-bert", device="cpu")
    with pytest.raises(ValueError, match="masked"):
        analysis.whole_word_continuation(lm, mr.make_probes(TEXTS[:1], lm))
