"""Neuron scores and knockouts are exact: checked against manual forwards on the tiny models."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_ranks_match, assert_tokens_match, one_configuration, sweep_rows

import memrecall as mr
from memrecall import analysis, forward, pipeline
from memrecall import interventions as iv
from memrecall.forward.batching import model_inputs, pad_right
from memrecall.interventions import resume

TEXTS = [
    "it's raining cats and dogs",
    "break the ice",
    "the early bird catches the worm",
    "a blessing in disguise",
]


@pytest.fixture(scope="module")
def probes(tiny):
    return mr.make_probes(TEXTS, tiny)


def padded(lm, prompts):
    """Right-padded batch as the library builds it, plus the prediction positions."""
    ids, positions = model_inputs(lm, prompts)
    input_ids, mask = pad_right(ids, lm.tokenizer.pad_token_id or 0, "cpu")
    return input_ids, mask, torch.tensor(positions)


@torch.no_grad()
def final_logits(lm, prompts):
    """The model's own output logits at the prediction positions, ``(batch, vocab)``."""
    input_ids, mask, positions = padded(lm, prompts)
    kwargs = {} if lm.is_masked else {"use_cache": False}
    logits = lm.model(input_ids=input_ids, attention_mask=mask, **kwargs).logits
    return logits[torch.arange(len(positions)), positions]


def sweep_row_logits(lm, probes, row, scope="all", seed=0):
    """The reference logits of one per-probe sweep row: its knockout on its prompt alone."""
    k, probe = int(row.k), int(row.probe)
    if row.control == "random":
        chosen = iv.random_neurons(len(probes), lm.n_layers, iv.mlp_width(lm), k, seed=seed)
    else:
        chosen = iv.top_neurons(lm, probes, k=k).indices
    neurons = {layer: chosen[probe, layer, :k]
               for layer in range(int(row.start_layer), int(row.end_layer) + 1)}
    prompt = [probes.prompt.iloc[probe]]
    _, _, positions = padded(lm, prompt)
    with iv.knockout(lm, neurons, complement=row.control == "non_dominant", positions=positions,
                     scope=scope):
        return final_logits(lm, prompt)[0].float()


def assert_sweeps_match(frame, reference, lm, probes, scope="all", seed=0):
    """Two per-probe sweeps of differently batched (split, resumed, one-at-a-time) forwards agree:
    probabilities to 1e-5, tokens and ranks up to float ties of the row's own reference logits
    (conftest.TIE_EPS), recomputed one row at a time where they differ."""
    assert list(frame.columns) == list(reference.columns) and len(frame) == len(reference)
    for column in frame.columns:
        if frame[column].dtype.kind == "f":
            np.testing.assert_allclose(frame[column], reference[column], atol=1e-5, rtol=0)
    keys = ["control", "k", "start_layer", "end_layer", "probe"]
    pd.testing.assert_frame_equal(frame[keys], reference[keys])
    differ = ((frame.pred_token != reference.pred_token)
              | (frame.target_rank != reference.target_rank)).to_numpy()
    for i in np.flatnonzero(differ):
        row, theirs = frame.iloc[i], reference.iloc[i]
        logits = sweep_row_logits(lm, probes, row, scope, seed)
        assert_tokens_match([row.pred_token], [theirs.pred_token], logits[None])
        target = probes.target_token.iloc[int(row.probe)]
        assert_ranks_match([row.target_rank], [theirs.target_rank], logits[None], [target])


def hook_counts(lm):
    return [len(lm.arch.mlp_out(layer)._forward_pre_hooks) for layer in range(lm.n_layers)]


@torch.no_grad()
def brute_value_vectors(lm, layer):
    """``v_i = f(e_i) - f(0)`` through the output projection's own forward: ``(d_ff, d)``."""
    module = lm.arch.mlp_out(layer)
    width = iv.mlp_width(lm, layer)
    return module(torch.eye(width)) - module(torch.zeros(1, width))


@torch.no_grad()
def manual_activations(lm, prompt):
    """Neuron activations of every layer at the prediction position, computed by hand per family.

    GPT-2: GELU(c_fc x); Llama/Gemma: act(gate x) * up x; BERT: the intermediate output.
    """
    ids, positions = model_inputs(lm, [prompt])
    inputs = {}
    handles = []
    for layer, block in enumerate(lm.arch.blocks):
        site = block.intermediate if lm.arch.model_type == "bert" else lm.arch.mlp(layer)
        handles.append(site.register_forward_pre_hook(
            lambda module, args, layer=layer: inputs.__setitem__(layer, args[0][0])))
    try:
        lm.model(input_ids=torch.tensor(ids))
    finally:
        for handle in handles:
            handle.remove()
    acts = []
    for layer, block in enumerate(lm.arch.blocks):
        x = inputs[layer][positions[0]]
        mlp = lm.arch.mlp(layer)
        if lm.arch.model_type == "gpt2":
            acts.append(mlp.act(mlp.c_fc(x)))
        elif lm.arch.model_type == "bert":
            acts.append(block.intermediate(x))
        else:
            acts.append(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))
    return torch.stack(acts)  # (n_layers, d_ff)


# --- scores ------------------------------------------------------------------------------------

def test_value_vectors_match_the_projection_forward(tiny):
    for layer in range(tiny.n_layers):
        torch.testing.assert_close(iv.value_vectors(tiny, layer), brute_value_vectors(tiny, layer),
                                   atol=1e-6, rtol=1e-5)


def test_scores_equal_a_manual_forward(tiny, probes):
    scores = iv.neuron_scores(tiny, probes)  # batched, padded
    assert scores.shape == (len(probes), tiny.n_layers, iv.mlp_width(tiny))
    for row, prompt in enumerate(probes.prompt):
        acts = manual_activations(tiny, prompt)
        norms = torch.stack([brute_value_vectors(tiny, layer).norm(dim=1)
                             for layer in range(tiny.n_layers)])
        torch.testing.assert_close(scores[row], acts.abs() * norms, atol=1e-5, rtol=1e-4)


def test_top_k_equals_brute_force(tiny, probes):
    k = 7
    top = iv.top_neurons(tiny, probes, k=k)
    assert top.indices.shape == (len(probes), tiny.n_layers, k)
    for row, prompt in enumerate(probes.prompt):
        acts = manual_activations(tiny, prompt)
        for layer in range(tiny.n_layers):
            norms = brute_value_vectors(tiny, layer).norm(dim=1)
            score = (acts[layer].abs() * norms).tolist()
            expected = sorted(range(len(score)), key=lambda i: -score[i])[:k]
            # a batched forward against one prompt alone: neurons may swap at float ties
            assert_tokens_match(top.indices[row, layer], expected,
                                torch.tensor(score).expand(k, -1))
            torch.testing.assert_close(top.scores[row, layer],
                                       torch.tensor([score[i] for i in expected]),
                                       atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(top.activations[row, layer], acts[layer, expected],
                                       atol=1e-5, rtol=1e-4)
    res = mr.project(tiny, probes)
    # project batches its own way: the same tokens up to float ties
    assert_tokens_match(top.pred_token, res.pred_token.to_numpy(),
                        final_logits(tiny, list(probes.prompt)))
    np.testing.assert_allclose(top.target_prob.numpy(), [p[-1] for p in res.target_prob],
                               atol=1e-6)


def test_k_is_capped_at_the_mlp_width(tiny, probes):
    top = iv.top_neurons(tiny, probes[:1], k=10**6)
    width = iv.mlp_width(tiny)
    assert top.indices.shape[-1] == width
    assert sorted(top.indices[0, 0].tolist()) == list(range(width))


# --- knockout ----------------------------------------------------------------------------------

def test_empty_knockout_leaves_logits_bit_identical(tiny, probes):
    prompts = list(probes.prompt)
    _, _, positions = padded(tiny, prompts)
    clean = final_logits(tiny, prompts)  # the same batch below: bit-identical, no tie allowance
    nothing = torch.empty(len(prompts), 0, dtype=torch.long)
    padding_only = torch.full((len(prompts), 3), -1)
    for neurons, scope in [({}, "all"), (dict.fromkeys(range(tiny.n_layers), nothing), "all"),
                           (dict.fromkeys(range(tiny.n_layers), padding_only), "prediction")]:
        with iv.knockout(tiny, neurons, positions=positions, scope=scope):
            assert torch.equal(final_logits(tiny, prompts), clean)


def test_complement_of_every_neuron_changes_nothing(tiny, probes):
    prompts = list(probes.prompt)
    clean = final_logits(tiny, prompts)
    everything = {layer: torch.arange(iv.mlp_width(tiny, layer))
                  for layer in range(tiny.n_layers)}
    with iv.knockout(tiny, everything, complement=True):  # the same batch: bit-identical
        assert torch.equal(final_logits(tiny, prompts), clean)
    with iv.knockout(tiny, everything):  # the same neurons, not complemented: a big change
        assert not torch.allclose(final_logits(tiny, prompts), clean, atol=1e-3)


@pytest.mark.parametrize("layer", [0, -1])
def test_whole_layer_knockout_removes_the_mlp_contribution(tiny, probes, layer):
    layer = layer % tiny.n_layers
    prompts = list(probes.prompt)
    clean = final_logits(tiny, prompts)
    out = tiny.arch.mlp_out(layer)
    bias = getattr(out, "bias", None)

    def constant(output):
        """What is left of an MLP (or its projection) without neurons: the bias, or nothing."""
        return torch.zeros_like(output) + (0 if bias is None else bias)

    if tiny.is_masked:  # BERT's "MLP" is the whole layer: remove the projection's W·a instead
        site, replace = out, lambda module, args, output: constant(output)
    else:  # decoders: the MLP module's output is exactly what it adds to the residual stream
        site, replace = tiny.arch.mlp(layer), lambda module, args, output: constant(output)
    handle = site.register_forward_hook(replace)
    try:
        manual = final_logits(tiny, prompts)
    finally:
        handle.remove()
    with iv.knockout(tiny, {layer: torch.arange(iv.mlp_width(tiny, layer))}):
        knocked = final_logits(tiny, prompts)
    torch.testing.assert_close(knocked, manual, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(knocked, clean, atol=1e-3)


def test_knockout_on_one_row_leaves_the_others_untouched(tiny, probes):
    prompts = list(probes.prompt)
    _, _, positions = padded(tiny, prompts)
    top = iv.top_neurons(tiny, probes, k=20)
    clean = final_logits(tiny, prompts)
    for scope in ("all", "prediction"):
        neurons = {}
        for layer in range(tiny.n_layers):
            chosen = torch.full((len(prompts), 20), -1)
            chosen[1] = top.indices[1, layer]
            neurons[layer] = chosen
        with iv.knockout(tiny, neurons, positions=positions, scope=scope):
            knocked = final_logits(tiny, prompts)
        others = [0, 2, 3]  # the same batch, rows untouched by the hook: bit-identical
        assert torch.equal(knocked[others], clean[others])
        assert not torch.allclose(knocked[1], clean[1], atol=1e-4)


def test_position_scope(tiny, probes):
    """At the last layer only the prediction position's MLP reaches the output; earlier, not."""
    prompts = list(probes.prompt)
    _, _, positions = padded(tiny, prompts)
    last, first = tiny.n_layers - 1, 0
    results = {}
    for layer in (first, last):
        for scope in ("all", "prediction"):
            with iv.knockout(tiny, {layer: torch.arange(10)}, positions=positions, scope=scope):
                results[layer, scope] = final_logits(tiny, prompts)
    torch.testing.assert_close(results[last, "all"], results[last, "prediction"],
                               atol=1e-6, rtol=1e-6)
    assert not torch.allclose(results[first, "all"], results[first, "prediction"], atol=1e-5)


def test_hooks_are_removed_after_exceptions(tiny, probes):
    before = hook_counts(tiny)
    with pytest.raises(RuntimeError, match="inside"):
        with iv.knockout(tiny, {0: [1, 2], 1: [3]}):
            assert hook_counts(tiny)[:2] == [b + 1 for b in before[:2]]
            raise RuntimeError("inside")
    assert hook_counts(tiny) == before
    # raised by the hook itself, mid-forward: neuron sets for 2 rows, a batch of 4
    with pytest.raises(ValueError, match="2 rows"):
        with iv.knockout(tiny, {0: torch.zeros(2, 1, dtype=torch.long)}):
            final_logits(tiny, list(probes.prompt))
    assert hook_counts(tiny) == before
    with pytest.raises(IndexError):  # bad input fails before any hook is registered
        with iv.knockout(tiny, {0: [1], 1: [10**6]}):
            pass
    assert hook_counts(tiny) == before
    with pytest.raises(ValueError, match="positions"):
        with iv.knockout(tiny, {0: [1]}, scope="prediction"):
            pass
    assert hook_counts(tiny) == before


# --- sweep -------------------------------------------------------------------------------------

def grouped(probes):
    frame = probes.copy()
    frame["group"] = ["memorized", "wiki", "memorized", "wiki"]
    return frame


def test_sweep_output_shape_and_columns(tiny, probes):
    frame = grouped(probes)
    ks = (1, 10**6)
    summary = iv.knockout_sweep(tiny, frame, ks=ks, max_window=2, progress=False)
    n_windows = tiny.n_layers + tiny.n_layers - 1
    assert len(summary) == 2 * len(iv.CONTROLS) * len(ks) * n_windows
    assert list(summary.columns) == ["group", *iv.SWEEP_KEYS, "n_probes", "changed_pct",
                                     "pred_prob_change", "target_rank_change",
                                     "target_prob_change"]
    assert set(summary.control) == {"dominant", "non_dominant", "random"}
    assert set(summary.k) == {1, iv.mlp_width(tiny)}
    assert set(summary.k_requested) == set(ks)
    assert (summary.end_layer - summary.start_layer + 1 == summary.window).all()
    assert summary.window.max() == 2 and summary.end_layer.max() == tiny.n_layers - 1
    assert (summary.n_probes == 2).all()
    assert summary.changed_pct.between(0, 100).all()
    # knocking out every neuron changes something; keeping every neuron changes nothing
    full = summary[summary.k == iv.mlp_width(tiny)]
    assert full[full.control == "dominant"].target_prob_change.abs().max() > 0
    spared = full[full.control == "non_dominant"]
    assert (spared.changed_pct == 0).all() and (spared.target_rank_change == 0).all()
    assert spared.target_prob_change.abs().max() < 1e-4  # points: float noise of the batch size


def test_sweep_per_probe_matches_summary_and_a_manual_knockout(tiny, probes):
    frame = grouped(probes)
    detail = iv.knockout_sweep(tiny, frame, ks=(3,), max_window=1, per_probe=True,
                               controls=("dominant",))
    assert len(detail) == len(probes) * tiny.n_layers
    # the same sweep again (same batches, same kernels): exactly equal
    pd.testing.assert_frame_equal(
        iv.summarize_sweep(detail),
        iv.knockout_sweep(tiny, frame, ks=(3,), max_window=1, controls=("dominant",)))
    # one row redone by hand: probe 2, top-3 of layer 1 knocked out
    top = iv.top_neurons(tiny, probes, k=3)
    with iv.knockout(tiny, {1: top.indices[2, 1]}):
        logits = final_logits(tiny, [probes.prompt[2]])[0]
    probs = torch.softmax(logits, -1)
    target = probes.target_token[2]
    row = detail[(detail.probe == 2) & (detail.start_layer == 1)].iloc[0]
    # the sweep's batched forward against this prompt alone: equal up to float ties
    assert_tokens_match([row.pred_token], [int(probs.argmax())], logits[None])
    assert row.changed == (row.pred_token != top.pred_token[2])
    assert row.target_prob == pytest.approx(float(probs[target]), abs=1e-6)
    assert_ranks_match([row.target_rank], [int((logits > logits[target]).sum())], logits[None],
                       [target])
    assert row.target_prob_change == pytest.approx(
        100 * (row.target_prob - float(top.target_prob[2])), abs=1e-4)
    assert row.group == "memorized"


def test_sweep_rows_equal_one_configuration_at_a_time(tiny, probes):
    """Many (configuration, probe) rows per forward give what one configuration at a time gives.

    The reference: for each configuration, the :func:`knockout` context manager and a plain
    whole forward of the probes. ``max_rows=5`` mixes configurations and probes in a forward.
    """
    ks, width = (3, 40), iv.mlp_width(tiny)
    detail = iv.knockout_sweep(tiny, probes, ks=ks, max_window=3, per_probe=True, max_rows=5)
    configs = iv.knockout_configs(tiny.n_layers, width, ks, 3)
    assert len(detail) == len(configs) * len(probes)
    top = iv.top_neurons(tiny, probes, k=max(ks))
    drawn = iv.random_neurons(len(probes), tiny.n_layers, width, max(ks), seed=0)
    batch = resume.probe_batches(tiny, list(probes.prompt))[0]
    targets = torch.tensor(probes.target_token.to_numpy())[batch.rows]
    tokens = torch.stack([top.pred_token[batch.rows], targets], 1)
    for config in configs.itertuples():
        chosen = drawn if config.control == "random" else top.indices
        logits, pred, rank, prob = one_configuration(tiny, batch, chosen, config, tokens)
        rows = sweep_rows(detail, config, batch)
        # Rows batched with other configurations and a whole forward round differently (float32,
        # ~1e-6 relative, and differently on each CPU's kernels): tokens and ranks may differ
        # only at float ties of the reference's logits (conftest.TIE_EPS).
        ours = torch.as_tensor(rows.pred_token.to_numpy())
        assert_tokens_match(ours, pred, logits)
        np.testing.assert_array_equal(rows.changed, (ours != top.pred_token[batch.rows]).numpy())
        np.testing.assert_allclose(rows.pred_prob, prob[:, 0].numpy(), atol=1e-6)
        np.testing.assert_allclose(rows.target_prob, prob[:, 1].numpy(), atol=1e-6)
        assert_ranks_match(rows.target_rank.to_numpy(), rank[:, 1], logits, targets)
    assert detail.changed.any() and not detail.changed.all()


def test_sweep_rows_split_on_out_of_memory(tiny, probes, monkeypatch):
    kwargs = dict(max_window=2, per_probe=True, progress=False)
    whole = iv.knockout_sweep(tiny, probes, **kwargs)
    run_block = iv.CleanRun.run_block

    def small_only(self, layer, hidden, index):
        if len(hidden) > 3:
            raise torch.OutOfMemoryError("CPU out of memory (simulated)")
        return run_block(self, layer, hidden, index)

    monkeypatch.setattr(iv.CleanRun, "run_block", small_only)
    split = iv.knockout_sweep(tiny, probes, **kwargs)
    monkeypatch.undo()
    assert_sweeps_match(split, whole, tiny, probes)


def test_sweep_batched_equals_one_at_a_time(tiny, probes):
    kwargs = dict(ks=(5,), max_window=2, controls=("dominant", "non_dominant"), per_probe=True,
                  progress=False)
    batched = iv.knockout_sweep(tiny, probes, **kwargs)
    single = iv.knockout_sweep(tiny, probes, batch_size=1, max_rows=1, **kwargs)
    assert_sweeps_match(batched, single, tiny, probes)
    np.testing.assert_allclose(batched.target_prob, single.target_prob, atol=1e-6)


def test_random_control_is_seeded(tiny, probes):
    kwargs = dict(ks=(5,), max_window=1, controls=("random",), per_probe=True)
    first = iv.knockout_sweep(tiny, probes, seed=3, **kwargs)
    again = iv.knockout_sweep(tiny, probes, seed=3, **kwargs)
    pd.testing.assert_frame_equal(first, again)  # the same computation twice: exactly equal
    width = iv.mlp_width(tiny)
    drawn = iv.random_neurons(len(probes), tiny.n_layers, width, 5, seed=3)
    assert torch.equal(drawn, iv.random_neurons(len(probes), tiny.n_layers, width, 5, seed=3))
    other = iv.random_neurons(len(probes), tiny.n_layers, width, 5, seed=4)
    assert not torch.equal(drawn, other)
    assert all(len(set(row.tolist())) == 5 for row in drawn.reshape(-1, 5))  # distinct
    nested = iv.random_neurons(len(probes), tiny.n_layers, width, 2, seed=3)
    assert torch.equal(nested, drawn[..., :2])
    # the sweep used exactly these draws: redo probe 0, layer 2 by hand
    with iv.knockout(tiny, {2: drawn[0, 2]}):
        logits = final_logits(tiny, [probes.prompt[0]])[0]
    # the sweep's batched forward against this prompt alone: equal up to float ties
    assert_tokens_match([first[(first.probe == 0) & (first.start_layer == 2)].pred_token.item()],
                        [int(logits.argmax())], logits[None])


def test_cached_sweep_is_computed_once(tiny, probes, tmp_path, monkeypatch):
    kwargs = dict(ks=(2,), max_window=1, controls=("dominant",))
    first = pipeline.cached_knockout_sweep(tiny, probes, tmp_path, **kwargs)
    assert len(list(tmp_path.glob("*knockout_sweep*.parquet"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(iv, "knockout_sweep", fail)
    # read back from the cache, never recomputed: exactly equal
    pd.testing.assert_frame_equal(pipeline.cached_knockout_sweep(tiny, probes, tmp_path, **kwargs),
                                  first)
    # the same fields as a config, and how it runs (batch size, resuming): the same result
    config = iv.SweepConfig(**kwargs)
    pd.testing.assert_frame_equal(
        pipeline.cached_knockout_sweep(tiny, probes, tmp_path, config, batch_size=1,
                                       resume=False), first)
    with pytest.raises(AssertionError, match="recomputed"):  # another seed is another result
        pipeline.cached_knockout_sweep(tiny, probes, tmp_path, seed=1, **kwargs)
    with pytest.raises(AssertionError, match="recomputed"):  # every config field is in the key
        pipeline.cached_knockout_sweep(tiny, probes, tmp_path, config, scope="prediction")


def test_sweep_config_is_the_key(tiny, probes):
    config = iv.SweepConfig(ks=[5, 2], max_window={"dominant": 2}, controls=["dominant"],
                            seed=7)
    assert config.ks == (5, 2) and config.controls == ("dominant",)
    before = {"ks": [5, 2], "max_window": {"dominant": 2}, "controls": ["dominant"],
              "scope": "all", "seed": 7, "per_probe": False, "group_column": "group"}
    assert config.key() == {**before, "frozen_norm": True}
    # for one model, the fields that change its result: frozen_norm only with a post-MLP norm
    # (Gemma 2/3), so the keys of other models are those from before the field
    assert config.key(tiny) == ({**before, "frozen_norm": True} if tiny.arch.has_post_mlp_norm
                                else before)
    assert hash(config) == hash(iv.SweepConfig(ks=(5, 2), max_window={"dominant": 2},
                                               controls=("dominant",), seed=7))
    assert config != iv.SweepConfig(ks=(5, 2), max_window={"dominant": 2},
                                    controls=("dominant",))
    assert iv.SweepConfig().key()["ks"] == [10] and iv.SweepConfig().max_window == 3  # the paper
    with pytest.raises(AttributeError):
        config.seed = 1  # frozen
    with pytest.raises(ValueError, match="control"):
        iv.SweepConfig(controls=("nope",))
    with pytest.raises(ValueError, match="scope"):
        iv.SweepConfig(scope="everywhere")
    with pytest.raises(TypeError):  # not a field
        iv.knockout_sweep(tiny, probes, kz=(1,))
    by_fields = iv.knockout_sweep(tiny, probes, ks=(3,), max_window=1, controls=("dominant",))
    by_config = iv.knockout_sweep(tiny, probes, iv.SweepConfig(ks=(3,), max_window=1,
                                                               controls=("dominant",)))
    pd.testing.assert_frame_equal(by_fields, by_config)  # the same computation: exactly equal


def test_configs_cap_and_dedupe():
    configs = iv.knockout_configs(n_layers=6, d_ff=50, ks=iv.RELEASED_KS,
                                  max_window={"dominant": 5, "non_dominant": 3},
                                  controls=("dominant", "non_dominant"))
    top = configs[configs.control == "dominant"]
    assert sorted(set(top.k)) == [1, 10, 50]
    assert set(top[top.k == 50].k_requested) == {100}
    assert len(top) == 3 * (6 + 5 + 4 + 3 + 2)
    assert configs[configs.control == "non_dominant"].window.max() == 3
    paper = iv.knockout_configs(n_layers=24, d_ff=4096)  # the paper's design by default
    assert len(paper) == 3 * (24 + 23 + 22) and set(paper.k) == {10}
    with pytest.raises(ValueError, match="control"):
        iv.knockout_configs(6, 50, controls=("nope",))


# --- vocabulary projections --------------------------------------------------------------------

def test_zero_neurons_hook():
    x = torch.arange(1.0, 25.0).reshape(2, 3, 4)  # (batch, seq, width)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    module = torch.nn.Identity()
    with forward.forward_hooks([(module, forward.zero_neurons_hook(mask))], pre=True):
        everywhere = module(x)
    with forward.forward_hooks([(module, forward.zero_neurons_hook(mask, torch.tensor([2, 0])))],
                             pre=True):
        at_one = module(x)
    expected = x.clone()
    expected[0, :, [0, 3]] = 0
    expected[1, :, 1] = 0
    assert torch.equal(everywhere, expected)
    expected = x.clone()
    expected[0, 2, [0, 3]] = 0
    expected[1, 0, 1] = 0
    assert torch.equal(at_one, expected)
    with pytest.raises(ValueError, match="my hook: neuron sets for 2 rows"):
        forward.zero_neurons_hook(mask, name="my hook")(module, (x[:1].repeat(3, 1, 1),))


def test_importing_the_engine_loads_no_floor_above_it():
    # memrecall's own modules only (a library may have a `jupyter` or `pipeline` of its own)
    code = ("import sys, memrecall.interventions; print(sorted(m for m in sys.modules if "
            "m.startswith('memrecall.') and m.split('.')[1] in "
            "{'analysis', 'report', 'figures', 'jupyter', 'pipeline', 'cache', 'reproduce'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_value_vector_tokens(tiny):
    layer, neuron = tiny.n_layers - 1, 5
    logits = brute_value_vectors(tiny, layer)[neuron] @ tiny.arch.unembed_weight.T
    expected = [tiny.tokenizer.decode([i]) for i in logits.topk(4).indices.tolist()]
    assert iv.value_vector_tokens(tiny, layer, neuron, k=4) == expected
    bottom = [tiny.tokenizer.decode([i]) for i in (-logits).topk(4).indices.tolist()]
    assert iv.value_vector_tokens(tiny, layer, neuron, k=4, sign=-1) == bottom
    assert len(iv.value_vector_tokens(tiny, layer, neuron, k=4, through_norm=True)) == 4


def test_prediction_rank_in_value_vectors(tiny, probes):
    k = 4
    res = iv.prediction_rank_in_value_vectors(tiny, probes, k=k)
    top = iv.top_neurons(tiny, probes, k=k)
    assert len(res) == len(probes)
    # the same top_neurons call inside (same batches, same kernels): exactly equal
    np.testing.assert_array_equal(res.pred_token, top.pred_token.numpy())
    vectors = [brute_value_vectors(tiny, layer) for layer in range(tiny.n_layers)]
    logits = torch.zeros(len(probes), tiny.n_layers, k, tiny.arch.unembed_weight.shape[0])
    for row in range(len(probes)):
        for layer in range(tiny.n_layers):
            for j in range(k):
                neuron, act = int(top.indices[row, layer, j]), float(top.activations[row, layer, j])
                logits[row, layer, j] = np.sign(act) * (vectors[layer][neuron]
                                                        @ tiny.arch.unembed_weight.T)
    preds = top.pred_token.view(-1, 1, 1)
    manual = (logits > logits.gather(-1, preds.expand(-1, tiny.n_layers, k)[..., None])).sum(-1)
    # the brute-force value vectors round differently from the library's: ranks up to float ties
    for row in range(len(probes)):
        assert res.sub_update_pred_rank[row].shape == (tiny.n_layers, k)
        assert_ranks_match(res.sub_update_pred_rank[row], manual[row], logits[row],
                           top.pred_token[row])
        np.testing.assert_array_equal(res.best_sub_update_pred_rank[row],
                                      res.sub_update_pred_rank[row].min(axis=1))
    # the tile size changes memory and speed, never the numbers beyond float ties
    small = iv.prediction_rank_in_value_vectors(tiny, probes, k=k, tile_bytes=1)
    np.testing.assert_array_equal(np.stack(small.sub_update_neurons),
                                  np.stack(res.sub_update_neurons))  # top_neurons: the same call
    assert_ranks_match(np.stack(small.sub_update_pred_rank), np.stack(res.sub_update_pred_rank),
                       logits, preds)


def test_resumed_forward_equals_a_whole_forward(tiny, probes):
    batch = resume.probe_batches(tiny, list(probes.prompt), None, trace=True)[0]
    with torch.no_grad():
        run = iv.CleanRun(tiny, batch, norm_scales=True)
        assert run.resumes  # the tiny architectures chain their blocks simply
        whole, _ = resume.forward(tiny, batch)
        # the same batch through the same blocks from recorded inputs: the same kernels on the
        # same numbers, so bit-identical (no float tie allowance)
        for start in range(tiny.n_layers):
            assert torch.equal(run.forward_from(start), whole)
        neurons = {2: torch.arange(30)}
        # a norm after the MLP (Gemma 3) frozen at the recorded clean scales in both forwards
        with iv.knockout(tiny, neurons, norm_scales=run.norm_scales):
            knocked, _ = resume.forward(tiny, batch)
            assert torch.equal(run.forward_from(2), knocked)
        assert not torch.equal(knocked, whole)
        unrecorded = iv.CleanRun(tiny, batch, resume=False)  # whole forwards, same numbers
        assert not unrecorded.resumes
        assert torch.equal(unrecorded.forward_from(2), whole)


def test_sweep_with_and_without_resuming_agree(tiny, probes):
    kwargs = dict(ks=(4,), max_window=2, per_probe=True, scope="prediction",
                  controls=("dominant", "random"))
    resumed = iv.knockout_sweep(tiny, probes, **kwargs)
    whole = iv.knockout_sweep(tiny, probes, resume=False, **kwargs)
    assert_sweeps_match(resumed, whole, tiny, probes, scope="prediction")


def test_batches_split_on_out_of_memory(tiny, probes):
    batches = resume.probe_batches(tiny, list(probes.prompt))
    assert len(batches) == 1 and len(batches[0].rows) == len(probes)

    def run(batch):
        if len(batch.rows) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return int(batch.rows[0])

    done = resume.map_batches(tiny, batches, run)
    assert sorted(result for _, result in done) == list(range(len(probes)))
    assert [len(b.rows) for b in batches] == [1] * len(probes)  # later passes start split
    with pytest.raises(ValueError, match="not memory"):
        resume.map_batches(tiny, batches, lambda batch: (_ for _ in ()).throw(
            ValueError("not memory")))


# --- notebook helpers -----------------------------------------------------------------------------

def lens_like(n_mem, n_non, n_wiki):
    idioms = pd.DataFrame({"text": [f"idiom {i}" for i in range(n_mem + n_non)],
                           "prompt": [f"idiom p{i}" for i in range(n_mem + n_non)],
                           "target": "x", "target_token": range(n_mem + n_non),
                           "is_memorized": [True] * n_mem + [False] * n_non,
                           "pred_rank": [np.zeros(3)] * (n_mem + n_non)})
    wiki = pd.DataFrame({"prompt": [f"wiki {i}" for i in range(n_wiki)], "target": "y",
                         "target_token": range(n_wiki), "is_memorized": False})
    return idioms, wiki


def test_knockout_probe_groups_samples_each_group():
    idioms, wiki = lens_like(3, 10, 8)
    groups = analysis.knockout_probe_groups(idioms, wiki, n=5, seed=1)
    assert list(groups.group.value_counts().reindex(["memorized", "non-memorized", "wikipedia"])) \
        == [3, 5, 5]
    assert list(groups.columns) == ["group", "source", "text", "prompt", "target",
                                    "target_token", "is_memorized"]
    non = groups[groups.group == "non-memorized"].target_token
    assert non.is_monotonic_increasing  # original order kept
    pd.testing.assert_frame_equal(groups, analysis.knockout_probe_groups(idioms, wiki, n=5, seed=1))
    assert not groups.equals(analysis.knockout_probe_groups(idioms, wiki, n=5, seed=2))
    # no memorized idioms (random smoke models): the group is simply absent
    none = analysis.knockout_probe_groups(*lens_like(0, 4, 4), n=5)
    assert set(none.group) == {"non-memorized", "wikipedia"}


def test_window_matrix_panels_and_profile(tiny, probes):
    summary = iv.knockout_sweep(tiny, grouped(probes), ks=(2, 5), max_window=2,
                                controls=("dominant", "random"), progress=False)
    n = tiny.n_layers
    matrix = iv.window_matrix(summary, control="dominant", k=5, group="wiki")
    assert matrix.shape == (n, n) and list(matrix.index) == list(range(n))
    assert np.isnan(matrix.to_numpy()[1, 0]) and np.isnan(matrix.to_numpy()[0, 2])
    row = summary[(summary.control == "dominant") & (summary.k_requested == 5)
                  & (summary.group == "wiki") & (summary.start_layer == 1)
                  & (summary.end_layer == 2)].iloc[0]
    assert matrix.loc[1, 2] == row.changed_pct
    with pytest.raises(ValueError, match="several"):
        iv.window_matrix(summary, control="dominant")
    panels = iv.window_panels(summary, "random")
    assert list(panels) == ["2 random neurons per layer", "5 random neurons per layer"]
    assert list(panels["2 random neurons per layer"]) == ["memorized (n=2)", "wiki (n=2)"]
    reordered = iv.window_panels(summary, "random", groups=["wiki", "memorized"])
    assert list(reordered["2 random neurons per layer"]) == ["wiki (n=2)", "memorized (n=2)"]
    profile = iv.layer_profile(summary)
    assert len(profile) == 2 * 2 * 2 * n
    assert profile.layer.min() == 1 and profile.layer.max() == n
    assert list(profile.columns) == ["group", "control", "k", "layer", "n_probes",
                                     "changed_pct"]


def synthetic_detail(n_probes=6, n_layers=4):
    rows = []
    for probe in range(n_probes):
        for control in ("dominant", "random"):
            for start in range(n_layers):
                changed = control == "dominant" and start < n_layers // 2 and probe % 3 != 0
                rows.append({"probe": probe, "group": "memorized", "control": control,
                             "k_requested": 10, "k": 10, "start_layer": start,
                             "end_layer": start, "window": 1, "changed": changed})
    return pd.DataFrame(rows)



def test_sub_update_examples_agree_with_value_vector_ranks(tiny, probes):
    layers = [0, tiny.n_layers - 1]
    table = iv.sub_update_examples(tiny, probes.head(2), layers, n_neurons=3, n_tokens=4)
    assert len(table) == 2 * len(layers) * 3
    assert set(table.layer) == {1, tiny.n_layers}
    ranks = iv.prediction_rank_in_value_vectors(tiny, probes.head(2), k=3)
    for _, row in table.iterrows():
        assert row.neuron == ranks.sub_update_neurons[row.probe][row.layer - 1,
                                                                 row.sub_update - 1]
        assert row.pred_rank == ranks.sub_update_pred_rank[row.probe][row.layer - 1,
                                                                     row.sub_update - 1]
        sign = -1.0 if row.activation < 0 else 1.0
        assert row.promotes.split(" | ") == iv.value_vector_tokens(
            tiny, row.layer - 1, row.neuron, 4, sign=sign)
    assert (table.groupby(["probe", "layer"]).score.diff().dropna() <= 0).all()
    with pytest.raises(IndexError):
        iv.sub_update_examples(tiny, probes.head(1), [tiny.n_layers])
