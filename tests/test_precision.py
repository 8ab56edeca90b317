"""Half precision: the lens ranks the logits a bfloat16/float16 model itself produces and reduces
them in float32; bfloat16 against float32 on the tiny models."""

import numpy as np
import pytest
import torch

import memrecall as mr
from memrecall.cache import result_key
from memrecall.forward.batching import model_inputs, pad_right
from memrecall.forward.hooks import capture_at_positions
from memrecall.lenses.projection import reference_logits

# bfloat16 moves a tiny model's logit by at most this much (measured: 0.065 at most over 60
# idioms, every layer, the four tiny models), so only tokens this close can swap order.
LOGIT_TOLERANCE = 0.1
# Probabilities of the target, every layer, bfloat16 against float32 (measured: 5e-4 at most).
PROB_TOLERANCE = 2e-3
# Share of probes whose greedy prediction may change (measured: 1 or 2 of 60 per model).
MAX_CHANGED_PREDICTIONS = 0.1
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module")
def idioms(data_dir):
    return mr.load_idiomem()["idiom"].astype(str).tolist()[:60]


def test_dtype_by_name_is_provenance():
    lm = mr.load("tiny-gpt2", device="cpu", dtype="bfloat16")
    assert lm.dtype == torch.bfloat16 and lm.head.dtype == torch.bfloat16
    assert lm.provenance()["dtype"] == "bfloat16"
    full = mr.load("tiny-gpt2", device="cpu")
    assert result_key(lm, "x", "project") != result_key(full, "x", "project")
    with pytest.raises(ValueError, match="bfloat16, float16"):
        mr.load("tiny-gpt2", device="cpu", dtype="float8")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", mr.profile_models("smoke"))
def test_half_precision_head_ranks_the_models_own_logits(name, dtype, device, idioms):
    lm = mr.load(name, device=device, dtype=dtype)
    probes = mr.make_probes(idioms, lm)
    ids, positions = model_inputs(lm, probes.prompt.tolist())
    input_ids, mask = pad_right(ids, lm.tokenizer.pad_token_id or 0, lm.device)
    where = torch.tensor(positions, device=lm.device)
    rows = torch.arange(len(where), device=lm.device)
    with torch.no_grad(), capture_at_positions(lm.arch.blocks, where) as captured:
        own = lm.model(input_ids=input_ids, attention_mask=mask).logits[rows, where]
    assert own.dtype == getattr(torch, dtype)
    normed = lm.head.normalize(captured[-1])
    assert normed.dtype == torch.float32
    # the same forward: the head's logits are the model's own, bit for bit
    assert torch.equal(lm.head.logits(normed), own.float())
    targets = torch.tensor(probes.target_token.to_numpy(), device=lm.device)[:, None]
    scan = lm.head.scan(normed, targets, argmax=True)
    own = own.float()
    assert torch.equal(scan.pred, own.argmax(1))
    assert torch.equal(scan.larger[:, 0], (own > own.gather(1, targets)).sum(1))
    # reductions in float32 over those logits
    expected = torch.softmax(own.double(), 1).gather(1, targets)[:, 0]
    torch.testing.assert_close(torch.exp(scan.own[:, 0] - scan.log_norm).double(), expected,
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", mr.profile_models("smoke"))
def test_bfloat16_against_float32(name, idioms):
    full = mr.load(name, device="cpu")
    half = mr.load(name, device="cpu", dtype="bfloat16")
    probes = mr.make_probes(idioms, full)
    ours, theirs = mr.project(full, probes), mr.project(half, probes)

    changed = np.flatnonzero(ours.pred_token.to_numpy() != theirs.pred_token.to_numpy())
    assert len(changed) <= MAX_CHANGED_PREDICTIONS * len(probes)
    np.testing.assert_allclose(np.stack(theirs.target_prob), np.stack(ours.target_prob),
                               atol=PROB_TOLERANCE, rtol=0)
    rank_32, rank_16 = np.stack(ours.target_rank), np.stack(theirs.target_rank)
    for row, prompt in enumerate(probes.prompt):
        logits = reference_logits(full, prompt)  # (n_layers, vocab), float32
        target = probes.target_token[row]
        # a changed prediction was a near-tie in float32
        if row in changed:
            gap = logits[-1, ours.pred_token[row]] - logits[-1, theirs.pred_token[row]]
            assert abs(gap) <= LOGIT_TOLERANCE
        # a rank moves only by tokens whose float32 logit is within the tolerance of the target's
        near = ((logits - logits[:, target : target + 1]).abs() <= LOGIT_TOLERANCE).sum(1) - 1
        assert (np.abs(rank_16[row] - rank_32[row]) <= near.numpy()).all()
