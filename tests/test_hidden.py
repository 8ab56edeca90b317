"""The model-side features of Table 5 (memrecall.forward.blocks), on every tiny architecture."""

import numpy as np
import torch
from conftest import assert_tokens_match

import memrecall as mr
from memrecall import forward
from memrecall.forward.batching import model_inputs


def test_final_hidden_state_is_what_the_unembedding_reads(tiny):
    texts = ["kick the bucket", "once in a blue moon", "spill the beans now please"]
    probes = mr.make_probes(texts, tiny)
    res = mr.project(tiny, probes)
    states = forward.final_hidden_states(tiny, probes, batch_size=2)
    assert states.shape[0] == len(texts) and states.dtype == np.float32
    logits = tiny.head.logits(torch.tensor(states, device=tiny.device))
    # batches of 2 against project's own batches: equal up to float ties
    assert_tokens_match(logits.argmax(-1), res["pred_token"].to_numpy(), logits.float())


def test_prompt_token_ids_padded(tiny):
    probes = mr.make_probes(["kick the bucket", "once in a blue moon"], tiny)
    ids = forward.prompt_token_ids(tiny, probes)
    expected, _ = model_inputs(tiny, probes["prompt"].tolist())
    assert ids.shape == (2, max(map(len, expected)))
    for row, tokens in zip(ids, expected):
        assert row[: len(tokens)].tolist() == tokens and (row[len(tokens):] == -1).all()
    features = forward.model_features(tiny, probes)
    assert set(features) == {"hidden", "token_ids"}
