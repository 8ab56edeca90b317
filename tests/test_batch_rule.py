"""The one engine rule for batches: a memory budget by default, halved on out-of-memory.

Out-of-memory is simulated by a pre-hook on the backbone that raises CUDA's message when a
forward reads more than ``max_rows`` rows; every engine must then give what its unhalved run
gives, and re-raise when a single row does not fit.
"""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import assert_continuations_match

import memrecall as mr
from memrecall import forward, lenses
from memrecall.forward import generate
from memrecall.forward.batching import halves, iter_halving

TEXTS = ["the cat is out of the bag", "kill two birds with one stone",
         "a blessing in disguise", "once in a blue moon qzxjvkpw",
         "every cloud has a silver lining", "kick the bucket", "spill the beans now please"]


@contextmanager
def out_of_memory_above(lm: mr.LM, max_rows: int):
    """Backbone forwards of more than ``max_rows`` rows fail as CUDA would; yields the sizes."""
    sizes: list[int] = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        sizes.append(int(ids.shape[0]))
        if ids.shape[0] > max_rows:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = lm.arch.backbone.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield sizes
    finally:
        handle.remove()


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def causal(request) -> mr.LM:
    return mr.load(request.param, device="cpu")


def test_halves_and_iter_halving_keep_the_order():
    assert [list(h) for h in halves(np.arange(5))] == [[0, 1], [2, 3, 4]]
    assert halves([7]) == []
    seen = []

    def fn(item):
        seen.append(list(item))
        if len(item) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return item[0] * 10

    lazy = iter_halving([[1, 2, 3], [4]], fn)
    assert seen == []  # nothing runs before it is asked for
    assert [result for _item, result in lazy] == [10, 20, 30, 40]
    assert seen[:3] == [[1, 2, 3], [1], [2, 3]]


def test_final_hidden_states_halves_on_out_of_memory(tiny):
    probes = mr.make_probes(TEXTS, tiny)
    clean = forward.final_hidden_states(tiny, probes)
    with out_of_memory_above(tiny, 2) as sizes:
        halved = forward.final_hidden_states(tiny, probes)
    assert max(sizes) > 2 and sorted(set(sizes))[0] <= 2  # a batch failed and was split
    np.testing.assert_allclose(halved, clean, rtol=0, atol=1e-5)
    assert (halved.argmax(-1) == clean.argmax(-1)).all()
    with out_of_memory_above(tiny, 0), pytest.raises(RuntimeError, match="out of memory"):
        forward.final_hidden_states(tiny, probes)


def test_hidden_batches_halve_on_out_of_memory(tiny):
    text = lenses.text_chunks(tiny, TEXTS * 20, n_tokens=48, chunk_len=16)
    clean = list(lenses.hidden_batches(tiny, text, batch_chunks=4))
    hooks = [len(block._forward_hooks) for block in tiny.arch.blocks]
    with out_of_memory_above(tiny, 1) as sizes:
        halved = list(lenses.hidden_batches(tiny, text, batch_chunks=4))
    assert 4 in sizes and max(sizes) == 4 and len(halved) > len(clean)
    assert [len(block._forward_hooks) for block in tiny.arch.blocks] == hooks
    # the halves are yielded in turn: the same rows in the same order
    torch.testing.assert_close(torch.cat(halved, dim=1), torch.cat(clean, dim=1),
                               rtol=0, atol=1e-5)
    with out_of_memory_above(tiny, 0), pytest.raises(RuntimeError, match="out of memory"):
        next(lenses.hidden_batches(tiny, text))


def test_whole_word_continuation_halves_on_out_of_memory(causal):
    probes = mr.make_probes(TEXTS, causal)
    clean = forward.whole_word_continuation(causal, probes, batch_size=64)
    with out_of_memory_above(causal, 1) as sizes:
        halved = forward.whole_word_continuation(causal, probes, batch_size=64)
    assert max(sizes) > 1 and 1 in sizes
    # halved batches pad and round differently: equal up to float ties (conftest)
    assert_continuations_match(halved, clean, causal, probes.prompt)
    with out_of_memory_above(causal, 0), pytest.raises(RuntimeError, match="out of memory"):
        forward.whole_word_continuation(causal, probes, batch_size=64)


def test_whole_word_continuation_takes_its_batches_from_the_budget(causal, monkeypatch):
    probes = mr.make_probes(TEXTS * 3, causal)
    explicit = forward.whole_word_continuation(causal, probes, batch_size=64)
    with out_of_memory_above(causal, 10**9) as sizes:
        default = forward.whole_word_continuation(causal, probes)
    # other batch sizes pad and round differently: equal up to float ties (conftest)
    assert_continuations_match(default, explicit, causal, probes.prompt)
    assert max(sizes) > 1  # the tiny model's budget holds many prompts per batch
    monkeypatch.setattr(generate, "activation_token_budget", lambda lm: 30)
    with out_of_memory_above(causal, 10**9) as sizes:
        small = forward.whole_word_continuation(causal, probes)
    assert_continuations_match(small, explicit, causal, probes.prompt)
    assert max(sizes) <= 3  # 30 tokens over sequences of at least 10
    with pytest.raises(ValueError, match="batch_size"):
        forward.whole_word_continuation(causal, probes, batch_size=0)
