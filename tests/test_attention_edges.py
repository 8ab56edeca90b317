"""Attention-edge knockouts: exact where nothing is blocked, equal to a naive reference else."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

import memrecall as mr
from memrecall.forward.batching import backbone_kwargs, model_inputs
from memrecall.interventions.attention import SOURCE_SETS, blocked_edges, source_positions
from memrecall.interventions.resume import CleanRun, forward, probe_batches

DECODERS = ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2"]
PROMPTS = ["the quick brown fox jumps over the lazy dog", "kill two birds with one stone",
           "once in a blue moon we go out"]
# Float tolerance between a batched forward and a one-row forward, and between SDPA and the
# eager reference: the same sums in another order (float32, tiny models: |h| ~ 1).
ATOL = 1e-5


@pytest.fixture(scope="module", params=DECODERS)
def lm(request):
    return mr.load(request.param, device="cpu")


@pytest.fixture(scope="module")
def batch(lm):
    (only,) = probe_batches(lm, PROMPTS)
    return only


def no_edges(lm, batch) -> torch.Tensor:
    return torch.zeros(len(batch.rows), lm.n_layers, batch.input_ids.shape[1], dtype=torch.bool)


def some_edges(lm, batch, layer: int) -> torch.Tensor:
    """Each row blocks, in ``layer``, every key before its prediction position but the first."""
    edges = no_edges(lm, batch)
    for row, position in enumerate(batch.positions.tolist()):
        edges[row, layer, 1:position] = True
    return edges


@contextmanager
def eager(lm) -> Iterator[None]:
    """The model's own eager attention (additive float masks) inside the block."""
    config = lm.arch.attention(0).config
    before = config._attn_implementation
    config._attn_implementation_internal = "eager"
    try:
        yield
    finally:
        config._attn_implementation_internal = before


@contextmanager
def naive_blocking(lm, layer: int, edges: torch.Tensor, positions: torch.Tensor):
    """The reference: under eager attention, the score of each blocked edge set to -inf by
    rewriting the additive mask handed to ``layer``'s attention module."""

    def hook(module, args, kwargs):
        mask = kwargs["attention_mask"]
        batch, keys = edges.shape[0], edges.shape[-1]
        mask = mask.expand(batch, *mask.shape[1:]).clone()
        for row, position in enumerate(positions.tolist()):
            mask[row, 0, position, :keys][edges[row, layer]] = torch.finfo(mask.dtype).min
        return args, {**kwargs, "attention_mask": mask}

    handle = lm.arch.attention(layer).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def test_blocking_nothing_is_the_clean_run_bit_for_bit(lm, batch):
    clean = forward(lm, batch)[0]
    with blocked_edges(lm, no_edges(lm, batch), batch.positions):
        assert torch.equal(forward(lm, batch)[0], clean)
    edges = some_edges(lm, batch, 0)
    edges[:, 0] = False
    for row, position in enumerate(batch.positions.tolist()):
        edges[row, :, position] = True  # only each row's own position: never blocked
    with blocked_edges(lm, edges, batch.positions):
        assert torch.equal(forward(lm, batch)[0], clean)


@pytest.mark.parametrize("layer", [0, -1])
def test_blocking_equals_the_naive_reference(lm, batch, layer):
    layer %= lm.n_layers
    edges = some_edges(lm, batch, layer)
    clean = forward(lm, batch)[0]
    with eager(lm), naive_blocking(lm, layer, edges, batch.positions):
        reference = forward(lm, batch)[0]
    with blocked_edges(lm, edges, batch.positions):
        ours = forward(lm, batch)[0]
    with eager(lm), blocked_edges(lm, edges, batch.positions):
        ours_eager = forward(lm, batch)[0]
    assert (reference - clean).abs().max() > 100 * ATOL  # the edges did matter
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours_eager, reference, atol=ATOL, rtol=0)


def test_batched_rows_equal_one_row_at_a_time_and_resume_equals_whole(lm, batch):
    edges = no_edges(lm, batch)
    for row, position in enumerate(batch.positions.tolist()):  # each row its own layer and keys
        edges[row, row % lm.n_layers, row % 2:position] = True
    start = int(edges.any(2).any(0).nonzero().min())
    clean = CleanRun(lm, batch)  # recorded outside the block: the clean run
    with blocked_edges(lm, edges, batch.positions):
        whole = forward(lm, batch)[0]
        resumed = clean.forward_rows(start, torch.arange(len(batch.rows)))
    torch.testing.assert_close(resumed, whole, atol=ATOL, rtol=0)
    for row in range(len(batch.rows)):
        (alone,) = probe_batches(lm, [PROMPTS[int(batch.rows[row])]])
        keys = alone.input_ids.shape[1]
        with blocked_edges(lm, edges[row:row + 1, :, :keys], alone.positions):
            single = forward(lm, alone)[0]
        torch.testing.assert_close(single[0], whole[row], atol=ATOL, rtol=0)


def test_an_edge_outside_the_sliding_window_changes_nothing():
    lm = mr.load("tiny-gemma3", device="cpu")
    window = lm.model.config.get_text_config().sliding_window
    (batch,) = probe_batches(lm, [PROMPTS[0]])
    position = int(batch.positions[0])
    assert position >= window + 1  # there is a key outside the window
    edges = no_edges(lm, batch)
    edges[0, :, : position - window + 1] = True  # every key the window already hides
    clean = forward(lm, batch)[0]
    with blocked_edges(lm, edges, batch.positions):
        assert torch.equal(forward(lm, batch)[0], clean)
    edges[0, :, position - window + 1] = True  # the oldest key inside it: now it matters
    with blocked_edges(lm, edges, batch.positions):
        assert not torch.equal(forward(lm, batch)[0], clean)


def test_misuse_is_refused(lm, batch):
    with pytest.raises(ValueError, match="edges must be"):
        with blocked_edges(lm, no_edges(lm, batch)[:, :1], batch.positions):
            pass
    with blocked_edges(lm, no_edges(lm, batch), batch.positions):
        with pytest.raises(RuntimeError, match="already active"):
            with blocked_edges(lm, no_edges(lm, batch), batch.positions):
                pass
    assert lm.arch.attention(0).config._attn_implementation == "sdpa"  # restored
    bert = mr.load("tiny-bert", device="cpu")
    with pytest.raises(ValueError, match="masked LM"):
        with blocked_edges(bert, torch.zeros(1, bert.n_layers, 4, dtype=torch.bool),
                           torch.tensor([3])):
            pass


def test_the_backbone_still_builds_its_masks_inside_the_block(lm):
    """A whole forward inside the block: the wrapper's name maps to the original mask maker."""
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    plain = lm.arch.backbone(input_ids=ids, attention_mask=mask, **backbone_kwargs(lm))
    edges = torch.zeros(2, lm.n_layers, 5, dtype=torch.bool)
    with blocked_edges(lm, edges, torch.tensor([4, 2])):
        inside = lm.arch.backbone(input_ids=ids, attention_mask=mask, **backbone_kwargs(lm))
    assert torch.equal(plain.last_hidden_state, inside.last_hidden_state)


def test_source_sets_follow_the_words_of_the_prompt(lm):
    prompts = ["the quick brown fox jumps over the", "kill two birds with one"]
    sets = source_positions(lm, prompts)
    assert set(sets) == set(SOURCE_SETS)
    ids, positions = model_inputs(lm, prompts)
    offsets = lm.tokenizer(prompts, return_offsets_mapping=True)["offset_mapping"]
    for row, (prompt, position) in enumerate(zip(prompts, positions, strict=True)):
        content, function = set(sets["content"][row]), set(sets["function"][row])
        assert sets["previous"][row] == list(range(position))
        assert sets["first"][row] == [0]
        assert content.isdisjoint(function) and position not in content | function
        assert content | function <= set(range(position))
        for index in range(position):  # every token of a word is in the word's set
            start, end = offsets[row][index]
            text = prompt[start:end].strip().lower()
            if not text:
                continue  # a special token (BOS)
            if text in {"the", "over", "with", "one", "two"}:
                assert index in function, (prompt, text)
            elif text in {"quick", "brown", "fox", "jumps", "kill", "birds"}:
                assert index in content, (prompt, text)
    # "two" and "one" are stop words in scikit-learn's list; "kill", "birds" are not
    assert "two" in ENGLISH_STOP_WORDS and "birds" not in ENGLISH_STOP_WORDS
