"""Knockouts on Gemma 2/3 freeze the norm after the MLP at its clean scale (tiny Gemma 3).

With the scale frozen, a knockout removes exactly the knocked-out sub-updates
``(1 + w) * m_i v_i / rms_clean`` from the residual stream, as GPT-2's knockouts do; with
``frozen_norm=False`` the norm rescales what is left. Models without such a norm are untouched.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_ranks_match, assert_tokens_match, one_configuration, sweep_rows

import memrecall as mr
from memrecall import analysis, pipeline
from memrecall import interventions as iv
from memrecall.forward.hooks import capture_at_positions, forward_hooks, hooks_suspended
from memrecall.interventions import resume
from memrecall.interventions.knockout import neuron_mask
from memrecall.models.architectures import ARCHITECTURES

TEXTS = [
    "it's raining cats and dogs",
    "break the ice",
    "the early bird catches the worm",
    "a blessing in disguise",
]


@pytest.fixture(scope="module")
def gemma():
    """Tiny Gemma 3 with random post-MLP norm weights (they start at 0: ``1 + w`` would be 1)."""
    lm = mr.load("tiny-gemma3", device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in range(lm.n_layers):
            weight = lm.arch.post_mlp_norm(layer).weight
            weight.copy_(0.5 * torch.randn(weight.shape, generator=generator))
    return lm


@pytest.fixture(scope="module")
def probes(gemma):
    return mr.make_probes(TEXTS, gemma)


@torch.no_grad()
def block_run(lm, batch, layer, **knockout):
    """Block ``layer``'s output ``(batch, seq, d)`` (under a knockout if ``knockout`` given), the
    clean activations entering its MLP output projection and its clean post-MLP norm scales."""
    outputs, acts = [], []

    def keep_output(module, args, output):
        outputs.append(output[0] if isinstance(output, tuple) else output)

    def keep_acts(module, args):
        acts.append(args[0])

    with forward_hooks([(lm.arch.blocks[layer], keep_output)]), \
            forward_hooks([(lm.arch.mlp_out(layer), keep_acts)], pre=True):
        if knockout:
            with iv.knockout(lm, **knockout):
                resume.forward(lm, batch)
        else:
            with resume.record_norm_scales(lm) as scales:
                resume.forward(lm, batch)
    return outputs[-1], acts[-1], (scales[layer] if not knockout else None)


def removed_sub_updates(lm, layer, acts, scale, zeroed):
    """``-(1 + w) * sum_{i zeroed} m_i v_i / rms_clean``: ``(batch, seq, d)``."""
    values = iv.value_vectors(lm, layer)  # (d_ff, d)
    weight = lm.arch.post_mlp_norm(layer).weight
    raw = (acts * zeroed[:, None, :]) @ values  # (batch, seq, d)
    return -(1 + weight) * raw * scale


def zeroed_mask(lm, layer, kept):
    """All but ``kept`` (``(batch, k)``) neurons zeroed: ``(batch, d_ff)`` float."""
    keep = neuron_mask(kept, iv.mlp_width(lm, layer), "cpu")
    return (~keep).float()


# --- the resolver -----------------------------------------------------------------------------

def test_resolver_knows_which_architectures_norm_the_mlp_output(gemma):
    with_norm = {name for name, spec in ARCHITECTURES.items() if spec.post_mlp_norm}
    assert with_norm == {"gemma2", "gemma3", "gemma3_text"}  # Gemma 1 has no post-MLP norm
    assert gemma.arch.has_post_mlp_norm
    for layer, block in enumerate(gemma.arch.blocks):
        assert gemma.arch.post_mlp_norm(layer) is block.post_feedforward_layernorm
    for name in ("tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-bert"):
        lm = mr.load(name, device="cpu")
        assert not lm.arch.has_post_mlp_norm and lm.arch.post_mlp_norm(0) is None
        with pytest.raises(ValueError, match="no norm after the MLP"):
            lm.arch.post_mlp_norm_scale(0, torch.ones(1, 2, 64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_norm_at_its_own_scale_is_the_module_bit_for_bit(gemma, dtype):
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(1)).to(dtype) * 4
    for layer in range(gemma.n_layers):
        norm = gemma.arch.post_mlp_norm(layer)
        scale = gemma.arch.post_mlp_norm_scale(layer, x)
        assert scale.shape == (3, 5, 1) and scale.dtype == torch.float32
        at = gemma.arch.post_mlp_norm_at_scale(layer, x, scale)
        assert at.dtype == dtype
        assert torch.equal(at, norm(x))  # the same operations in the same order
        # at a fixed scale the norm is linear: doubling the input doubles the output
        assert torch.equal(gemma.arch.post_mlp_norm_at_scale(layer, 2 * x, scale), 2 * at)


# --- (a), (b): the residual stream loses exactly the removed sub-updates ------------------------

@pytest.mark.parametrize("layer", [1, 3])
def test_frozen_norm_removes_exactly_the_knocked_out_sub_updates(gemma, probes, layer):
    batch = resume.probe_batches(gemma, list(probes.prompt))[0]
    clean, acts, scale = block_run(gemma, batch, layer)
    kept = iv.top_neurons(gemma, probes, k=10).indices[batch.rows, layer]  # (batch, 10)
    expected = removed_sub_updates(gemma, layer, acts, scale, zeroed_mask(gemma, layer, kept))
    real = batch.attention_mask.bool()  # padding positions are never read
    for frozen in (True, False):
        knocked, _, _ = block_run(gemma, batch, layer, neurons={layer: kept}, complement=True,
                                  frozen_norm=frozen)
        error = (knocked - clean - expected)[real].abs().max()
        if frozen:
            # float32: both residuals are sums of terms of size ~|h| (rounding ~1e-7 |h|), the
            # expected change another sum of d_ff products; 1e-5 of the residual's size is far
            # above that and far below the change itself (checked next)
            assert error <= 1e-5 * clean[real].abs().max()
            assert expected[real].abs().max() > 0.1 * clean[real].abs().max()
        else:  # the norm rescales the 10 kept sub-updates: the identity fails by a lot
            assert error > 0.1 * expected[real].abs().max()


def test_prediction_scope_freezes_only_the_prediction_position(gemma, probes):
    layer = 2
    batch = resume.probe_batches(gemma, list(probes.prompt))[0]
    clean, acts, scale = block_run(gemma, batch, layer)
    chosen = iv.top_neurons(gemma, probes, k=10).indices[batch.rows, layer]
    knocked, _, _ = block_run(gemma, batch, layer, neurons={layer: chosen},
                              positions=batch.positions, scope="prediction")
    rows = torch.arange(len(batch.rows))
    zeroed = neuron_mask(chosen, iv.mlp_width(gemma), "cpu").float()
    expected = removed_sub_updates(gemma, layer, acts, scale, zeroed)
    change = knocked - clean
    at = batch.positions
    # float32 tolerance as in the test above
    assert (change[rows, at] - expected[rows, at]).abs().max() <= 1e-5 * clean.abs().max()
    elsewhere = torch.ones_like(batch.attention_mask, dtype=torch.bool)
    elsewhere[rows, at] = False
    assert torch.equal(knocked[elsewhere], clean[elsewhere])  # untouched rows: the same ops


def test_a_forward_without_the_backbone_needs_the_clean_scales(gemma, probes):
    batch = resume.probe_batches(gemma, list(probes.prompt), trace=True)[0]
    with torch.no_grad():
        run = iv.CleanRun(gemma, batch)  # no scales recorded
        assert run.norm_scales is None and run.scales_for([0], batch.rows) is None
        with pytest.raises(RuntimeError, match="no clean scales"):
            with iv.knockout(gemma, {1: torch.arange(5)}):
                run.forward_from(1)
        assert not gemma.arch.backbone._forward_pre_hooks  # removed after the error
        assert not gemma.arch.post_mlp_norm(1)._forward_hooks
        recorded = iv.CleanRun(gemma, batch, norm_scales=True)
        whole = iv.CleanRun(gemma, batch, resume=False, norm_scales=True)  # a clean forward
        assert set(recorded.norm_scales) == set(range(gemma.n_layers))
        for layer in range(gemma.n_layers):  # the same batch, the same kernels: equal
            assert torch.equal(recorded.norm_scales[layer], whole.norm_scales[layer])
        with iv.knockout(gemma, {1: torch.arange(5)}):  # the backbone: a clean pass first
            auto, _ = resume.forward(gemma, batch)
        with iv.knockout(gemma, {1: torch.arange(5)}, norm_scales=recorded.norm_scales):
            given = recorded.forward_from(1)
        assert torch.equal(auto, given)  # the same scales, the same blocks on the same inputs
        with iv.knockout(gemma, {1: torch.arange(5)}, frozen_norm=False):
            free, _ = resume.forward(gemma, batch)
        assert not torch.allclose(auto, free, atol=1e-4)


def test_the_clean_pass_is_invisible_to_the_callers_hooks(gemma, probes):
    block, calls = gemma.arch.blocks[0], []
    handles = [block.register_forward_pre_hook(lambda module, args: calls.append("pre")),
               block.register_forward_hook(lambda module, args, out: calls.append("post"))]
    ids = torch.tensor([[2, 5, 7]])
    try:
        with torch.no_grad():
            with hooks_suspended(gemma.model), \
                    forward_hooks([(block, lambda module, args, out: calls.append("inside"))]):
                gemma.model(input_ids=ids, use_cache=False)
            assert calls == ["inside"]  # set aside; hooks registered inside run
            gemma.model(input_ids=ids, use_cache=False)
            assert calls == ["inside", "pre", "post"]  # back, in their order
            batch = resume.probe_batches(gemma, list(probes.prompt))[0]
            with capture_at_positions([gemma.arch.blocks[-1]], batch.positions) as seen, \
                    iv.knockout(gemma, {1: torch.arange(5)}):
                gemma.arch.backbone(input_ids=batch.input_ids,
                                    attention_mask=batch.attention_mask, use_cache=False)
            assert len(seen) == 1  # the knocked-out forward only, not its clean pass
    finally:
        for handle in handles:
            handle.remove()


# --- (c): the batched sweep against one configuration at a time --------------------------------

@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("resumed", [True, False])
def test_sweep_rows_equal_one_configuration_at_a_time(gemma, probes, frozen, resumed):
    """``max_rows=5`` mixes configurations (and rows whose window has ended) in a forward."""
    ks, width = (3, 40), iv.mlp_width(gemma)
    detail = iv.knockout_sweep(gemma, probes, ks=ks, max_window=3, per_probe=True, max_rows=5,
                               frozen_norm=frozen, resume=resumed)
    top = iv.top_neurons(gemma, probes, k=max(ks))
    drawn = iv.random_neurons(len(probes), gemma.n_layers, width, max(ks), seed=0)
    batch = resume.probe_batches(gemma, list(probes.prompt))[0]
    targets = torch.tensor(probes.target_token.to_numpy())[batch.rows]
    tokens = torch.stack([top.pred_token[batch.rows], targets], 1)
    for config in iv.knockout_configs(gemma.n_layers, width, ks, 3).itertuples():
        chosen = drawn if config.control == "random" else top.indices
        logits, pred, rank, prob = one_configuration(gemma, batch, chosen, config, tokens,
                                                     frozen_norm=frozen)
        rows = sweep_rows(detail, config, batch)
        # differently batched float32 forwards: probabilities to 1e-6, tokens and ranks equal
        # up to float ties of the reference's logits (conftest.TIE_EPS)
        assert_tokens_match(torch.as_tensor(rows.pred_token.to_numpy()), pred, logits)
        np.testing.assert_allclose(rows.pred_prob, prob[:, 0].numpy(), atol=1e-6)
        np.testing.assert_allclose(rows.target_prob, prob[:, 1].numpy(), atol=1e-6)
        assert_ranks_match(rows.target_rank.to_numpy(), rank[:, 1], logits, targets)


def test_frozen_and_recomputed_norms_give_different_sweeps(gemma, probes):
    kwargs = dict(ks=(10,), max_window=1, controls=("non_dominant",), per_probe=True)
    frozen = iv.knockout_sweep(gemma, probes, **kwargs)  # the default
    pd.testing.assert_frame_equal(frozen, iv.knockout_sweep(gemma, probes, frozen_norm=True,
                                                            **kwargs))  # the same computation
    free = iv.knockout_sweep(gemma, probes, frozen_norm=False, **kwargs)
    assert (frozen.target_prob - free.target_prob).abs().max() > 1e-3


# --- (d): models without a norm after the MLP ---------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_the_option_changes_nothing_without_a_post_mlp_norm(name, tmp_path, monkeypatch):
    lm = mr.load(name, device="cpu")
    frame = mr.make_probes(TEXTS, lm)
    kwargs = dict(ks=(3,), max_window=2, controls=("dominant", "non_dominant"), per_probe=True)
    pd.testing.assert_frame_equal(  # no hook either way: the same computation, exactly equal
        iv.knockout_sweep(lm, frame, frozen_norm=True, **kwargs),
        iv.knockout_sweep(lm, frame, frozen_norm=False, **kwargs))
    batch = resume.probe_batches(lm, list(frame.prompt))[0]
    with torch.no_grad():
        assert iv.CleanRun(lm, batch, norm_scales=True).norm_scales is None
        results = []
        for frozen in (True, False):
            with iv.knockout(lm, {1: torch.arange(30)}, frozen_norm=frozen):
                assert not lm.arch.backbone._forward_pre_hooks  # no clean pass
                results.append(resume.forward(lm, batch)[0])
        assert torch.equal(*results)
    # the cache key: frozen_norm is not part of it, so both settings share one result
    config = iv.SweepConfig(**kwargs)
    assert "frozen_norm" not in config.key(lm) and "frozen_norm" in config.key()
    pipeline.cached_knockout_sweep(lm, frame, tmp_path, config)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(iv, "knockout_sweep", fail)
    pd.testing.assert_frame_equal(  # both read back from the one cache entry: exactly equal
        pipeline.cached_knockout_sweep(lm, frame, tmp_path, config, frozen_norm=False),
        pipeline.cached_knockout_sweep(lm, frame, tmp_path, config))
    assert len(list(tmp_path.glob("*knockout_sweep*.parquet"))) == 1


def test_gemma_caches_both_settings_apart(gemma, probes, tmp_path):
    config = iv.SweepConfig(ks=(2,), max_window=1, controls=("dominant",))
    assert config.key(gemma)["frozen_norm"] is True
    pipeline.cached_knockout_sweep(gemma, probes, tmp_path, config)
    pipeline.cached_knockout_sweep(gemma, probes, tmp_path, config, frozen_norm=False)
    assert len(list(tmp_path.glob("*knockout_sweep*.parquet"))) == 2


# --- the comparison for notebook 05 ------------------------------------------------------------

def test_norm_comparison_sets_the_two_tables_side_by_side():
    keys = dict(group=["memorized"] * 3, control=["dominant"] * 3, k_requested=[10] * 3,
                k=[10] * 3, start_layer=[0, 1, 0], end_layer=[0, 1, 1], window=[1, 1, 2])
    frozen = pd.DataFrame({**keys, "changed_pct": [90.0, 20.0, 95.0],
                           "changed_pct_lo": [80.0, 10.0, 90.0],
                           "changed_pct_hi": [99.0, 30.0, 99.0]})
    free = frozen.assign(changed_pct=[50.0, 25.0, 60.0]).iloc[::-1]  # another order
    out = analysis.norm_comparison(frozen, free)
    assert list(out.columns) == [*keys, "changed_pct_frozen", "changed_pct_frozen_lo",
                                 "changed_pct_frozen_hi", "changed_pct_free",
                                 "changed_pct_free_lo", "changed_pct_free_hi", "difference"]
    assert out.start_layer.tolist() == [0, 1, 0]  # frozen's order, 0-based
    assert out.changed_pct_free.tolist() == [50.0, 25.0, 60.0]  # matched by configuration
    assert out.difference.tolist() == [40.0, -5.0, 35.0]

    def results(table, frozen_norm, model="tiny-gemma3"):
        return pipeline.KnockoutResults(model, 2, None, None, None, table, {}, "memorized",
                                        None, None, iv.SweepConfig(frozen_norm=frozen_norm))

    shown = pipeline.knockout_norm_comparison(results(frozen, True), results(free, False))
    assert shown.start_layer.tolist() == [1, 2, 1] and shown.end_layer.tolist() == [1, 2, 2]
    layer_1 = shown[(shown.start_layer == 1) & (shown.window == 1)].iloc[0]
    assert (layer_1.changed_pct_frozen, layer_1.changed_pct_free) == (90.0, 50.0)
    with pytest.raises(ValueError, match="frozen_norm=True first"):
        pipeline.knockout_norm_comparison(results(free, False), results(frozen, True))
    with pytest.raises(ValueError, match="two models"):
        pipeline.knockout_norm_comparison(results(frozen, True),
                                          results(free, False, model="tiny-gpt2"))
