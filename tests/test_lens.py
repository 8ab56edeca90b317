"""The lens is exact: it reproduces the model's own distribution and a naive per-layer reference."""

import numpy as np
import pytest
import torch
from conftest import assert_ranks_match, assert_tokens_match

import memrecall as mr
from memrecall.forward.batching import model_inputs, plan_batches
from memrecall.forward.blocks import block_outputs
from memrecall.lenses import projection as lens_projection
from memrecall.lenses.projection import reference_logits
from memrecall.models.head import Head

TEXTS = [
    "it's raining cats and dogs",
    "break the ice",
    "once in a blue moon we hit the sack early and wake up at the crack of dawn after the long "
    "season of training and many close games",
    "the early bird catches the worm",
    "a blessing in disguise",
    "kill two birds with one stone",
]


@pytest.fixture(scope="module")
def result(tiny):
    probes = mr.make_probes(TEXTS, tiny)
    return probes, mr.project(tiny, probes)


@pytest.fixture(scope="module")
def naive(tiny, result):
    """Each prompt's every-layer logits, one prompt at a time: ``(rows, layers, vocab)``."""
    probes, _ = result
    return torch.stack([reference_logits(tiny, prompt) for prompt in probes.prompt]).float()


def assert_projections_match(res, reference, logits):
    """Two projections of differently batched forwards (batch size, halves, vocabulary or row
    tiles) agree: tokens and every layer's ranks up to float ties of the naive logits
    (conftest.TIE_EPS), probabilities to 1e-6."""
    assert_tokens_match(res.pred_token.to_numpy(), reference.pred_token.to_numpy(), logits[:, -1])
    pred = reference.pred_token.to_numpy()
    same = res.pred_token.to_numpy() == pred  # else the ranks of other tokens
    assert_ranks_match(np.stack(res.pred_rank)[same], np.stack(reference.pred_rank)[same],
                       logits[same], torch.tensor(pred[same]).view(-1, 1))
    if "target_rank" in reference:
        assert_ranks_match(np.stack(res.target_rank), np.stack(reference.target_rank), logits,
                           torch.tensor(reference.target_token.to_numpy()).view(-1, 1))
    for column in ("pred_prob", "target_prob"):
        if column in reference:
            np.testing.assert_allclose(np.stack(res[column]), np.stack(reference[column]),
                                       atol=1e-6)


def ranks_by_sorting(logits: torch.Tensor, token: int) -> np.ndarray:
    order = torch.argsort(logits, dim=-1, descending=True, stable=True)
    # position in the sorted order, moved back before any token with an equal logit
    ranks = []
    for row, row_order in zip(logits, order):
        position = int((row_order == token).nonzero())
        ties_before = int((row[row_order[:position]] == row[token]).sum())
        ranks.append(position - ties_before)
    return np.array(ranks)


def test_last_layer_is_the_models_own_distribution(tiny, result):
    probes, res = result
    # project's batched forward against each prompt alone: equal up to float ties
    for row in range(len(probes)):
        logits = reference_logits(tiny, probes.prompt[row])[-1]
        probs = torch.softmax(logits.double(), -1)
        assert_tokens_match([res.pred_token[row]], [int(logits.argmax())], logits[None])
        assert res.pred_rank[row][-1] == 0
        target = probes.target_token[row]
        assert abs(res.pred_prob[row][-1] - probs[res.pred_token[row]].item()) < 1e-5
        assert abs(res.target_prob[row][-1] - probs[target].item()) < 1e-5
        assert_ranks_match([res.target_rank[row][-1]], [int((logits > logits[target]).sum())],
                           logits[None], [target])


def test_every_layer_matches_the_naive_reference(tiny, result):
    probes, res = result
    for row in range(len(probes)):
        logits = reference_logits(tiny, probes.prompt[row])
        probs = torch.softmax(logits.double(), -1)
        for column, token in (("pred", res.pred_token[row]), ("target", probes.target_token[row])):
            # project's batched forward against this prompt alone: equal up to float ties
            assert_ranks_match(res[f"{column}_rank"][row], ranks_by_sorting(logits, token),
                               logits, token)
            np.testing.assert_allclose(res[f"{column}_prob"][row], probs[:, token].numpy(),
                                       atol=1e-6, rtol=1e-4)


def test_output_columns_and_memorized_flag(tiny, result):
    probes, res = result
    assert list(res.columns[:4]) == ["text", "prompt", "target", "target_token"]
    for column in ("pred_token", "is_memorized", "pred_rank", "pred_prob", "target_rank",
                   "target_prob"):
        assert column in res.columns
    assert all(len(a) == tiny.n_layers for a in res.pred_rank)
    np.testing.assert_array_equal(res.is_memorized, res.pred_token == res.target_token)
    assert res.is_memorized.dtype == bool


def test_batched_equals_one_at_a_time(tiny, result, naive):
    probes, res = result
    assert_projections_match(mr.project(tiny, probes, batch_size=1), res, naive)


def test_vocabulary_chunking_changes_nothing(tiny, result, naive):
    probes, res = result
    # odd size: chunk edges fall anywhere, several chunks per vocabulary (other matmul shapes)
    chunked = mr.project(tiny, probes, head=Head(tiny.arch, tile_ids=97))
    assert_projections_match(chunked, res, naive)


def test_out_of_memory_halves_the_batch(tiny, result, naive, monkeypatch):
    probes, res = result
    real = lens_projection.block_outputs
    sizes = []

    def flaky(lm, ids, positions):
        sizes.append(len(ids))
        if len(ids) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(lm, ids, positions)

    monkeypatch.setattr(lens_projection, "block_outputs", flaky)
    retried = mr.project(tiny, probes)
    assert max(sizes) == len(probes) and sizes[-1] <= 2
    assert_projections_match(retried, res, naive)


def test_other_errors_are_not_swallowed(tiny, monkeypatch):
    def broken(lm, ids, positions):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(lens_projection, "block_outputs", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        mr.project(tiny, ["a prompt here"])


def test_plain_prompts_give_prediction_columns_only(tiny):
    res = mr.project(tiny, ["the quick brown fox jumps over the lazy", "break the"])
    assert list(res.columns) == ["prompt", "pred_token", "pred_rank", "pred_prob"]
    assert all(r[-1] == 0 for r in res.pred_rank)
    assert all(0 < p[-1] <= 1 for p in res.pred_prob)


def test_hooks_are_removed(tiny):
    before = [len(block._forward_hooks) for block in tiny.arch.blocks]
    mr.project(tiny, ["break the"])
    assert [len(block._forward_hooks) for block in tiny.arch.blocks] == before

    def broken(module, args, output):
        raise ValueError("boom")

    handle = tiny.arch.blocks[-1].register_forward_hook(broken)  # fails inside the forward
    try:
        with pytest.raises(ValueError, match="boom"):
            mr.project(tiny, ["break the"])
    finally:
        handle.remove()
    assert [len(block._forward_hooks) for block in tiny.arch.blocks] == before


def test_plan_batches_covers_every_row_once_under_the_budget():
    lengths = [3, 17, 5, 5, 40, 2, 9, 9, 9, 1]
    batches = plan_batches(lengths, max_tokens=45)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 45
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)
    assert all(len(b) <= 2 for b in plan_batches(lengths, 10_000, max_rows=2))


def test_row_tiles_change_nothing(tiny, result, naive):
    probes, res = result
    # several row tiles, a ragged last one (other matmul shapes)
    assert_projections_match(mr.project(tiny, probes, head=Head(tiny.arch, tile_rows=3)), res,
                             naive)


def test_plan_batches_trades_padding_against_batch_overhead():
    lengths = [8] * 50 + [7] * 50 + [3] * 20
    cheap = plan_batches(lengths, max_tokens=10_000, overhead_tokens=8)
    for batch in cheap:  # batches are cheap: no padding at all
        assert len({lengths[i] for i in batch}) == 1
    dear = plan_batches(lengths, max_tokens=10_000, overhead_tokens=1_000)
    assert len(dear) == 1  # batches are dear: one padded batch
    assert len(plan_batches([], 100)) == 0


def test_head_is_the_models_own_read_out(tiny, result):
    probes, res = result
    head = tiny.head
    assert head is tiny.head and head.vocab_size == tiny.vocab_size
    tokens = torch.tensor(probes.target_token.to_numpy(dtype=np.int64)).view(-1, 1)
    with torch.inference_mode():
        hidden = block_outputs(tiny, *model_inputs(tiny, list(probes.prompt)))
        normed = head.normalize(hidden[-1])
        logits = head.logits(normed)
        pred, prob = head.predict(normed)
        ranks, _ = head.rank_and_prob(normed, tokens)
        own = head.token_logits(normed, tokens[:, 0])
    for row, prompt in enumerate(probes.prompt):
        torch.testing.assert_close(logits[row], reference_logits(tiny, prompt)[-1],
                                   atol=1e-4, rtol=1e-4)
    # one padded batch of every prompt against project's own batches: equal up to float ties
    assert_tokens_match(pred, res.pred_token.to_numpy(), logits.float())
    torch.testing.assert_close(prob, torch.softmax(logits, -1).max(-1).values)
    assert_ranks_match(ranks[:, 0], [r[-1] for r in res.target_rank], logits.float(),
                       tokens[:, 0])
    torch.testing.assert_close(own, logits.gather(1, tokens)[:, 0])


def test_padding_helpers():
    from memrecall.forward.batching import pad_left, pad_right

    ids, mask = pad_right([[5, 6, 7], [8]], 0, "cpu")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_left([[5, 6, 7], [8]], 0, "cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_halve_on_oom_splits_until_it_fits_and_raises_when_it_cannot():
    from memrecall.forward.batching import halve_on_oom

    def fn(item):
        if len(item) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return sum(item)

    def halves(item):
        return [item[: len(item) // 2], item[len(item) // 2 :]] if len(item) > 1 else []

    done = halve_on_oom([[1, 2, 3, 4, 5], [6]], fn, halves, "cpu")
    assert [item for item, _ in done] == [[1, 2], [3], [4, 5], [6]]
    assert [result for _, result in done] == [3, 3, 9, 6]
    with pytest.raises(torch.OutOfMemoryError):
        halve_on_oom([[1, 2, 3]], fn, lambda item: [item], "cpu")


def test_tie_helpers_allow_float_ties_only():
    logits = torch.tensor([[3.0, 2.0, 2.0 + 5e-5, 1.0]])  # tokens 1 and 2 tied, 0 clear
    assert_tokens_match([2], [1], logits)  # a swap within a tie
    with pytest.raises(AssertionError, match="float tie"):
        assert_tokens_match([0], [1], logits)
    assert_ranks_match([2], [1], logits, [1])  # rank 1 or 2: one token tied with it
    with pytest.raises(AssertionError, match="float tie"):
        assert_ranks_match([3], [1], logits, [1])
    with pytest.raises(AssertionError, match="float tie"):
        assert_ranks_match([1], [0], logits, [0])  # the top token has no tie
