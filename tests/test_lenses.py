"""Fitted lenses (linear shortcut, tuned lens): exactness, recovery, held-out KL, save and load."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

import memrecall as mr
from memrecall import lenses, pipeline
from memrecall.lenses.base import LogitLens

PROMPTS = ["the quick brown fox jumps over the lazy dog",
           "a blessing in disguise is better late than never",
           "once in a blue moon we hit the sack early",
           "kill two birds with one stone"]
PER_LAYER = ["pred_rank", "pred_prob", "target_rank", "target_prob"]


@pytest.fixture(scope="module")
def fitted(tiny, data_dir):
    """Both lenses fitted on a small WikiText budget for each tiny model."""
    text = lenses.wikitext_chunks(tiny, "valid", n_tokens=256, path=data_dir)
    return {"linear shortcut": lenses.LinearShortcut.fit(tiny, text),
            "tuned lens": lenses.TunedLens.fit(tiny, text, steps=5, rows_per_step=64)}


def probes(lm):
    return mr.make_probes(PROMPTS, lm)


def assert_same_results(a: pd.DataFrame, b: pd.DataFrame, last_only: bool = False) -> None:
    assert (a["pred_token"].to_numpy() == b["pred_token"].to_numpy()).all()
    for column in PER_LAYER:
        for x, y in zip(a[column], b[column], strict=True):
            if last_only:
                x, y = x[-1:], y[-1:]
            assert x.tobytes() == y.tobytes(), column


def test_logit_lens_is_the_default(tiny):
    assert_same_results(mr.project(tiny, probes(tiny), lens=LogitLens()),
                        mr.project(tiny, probes(tiny)))


def test_identity_tuned_lens_equals_logit_lens(tiny):
    assert_same_results(mr.project(tiny, probes(tiny), lens=lenses.TunedLens.identity(tiny)),
                        mr.project(tiny, probes(tiny)))


def test_last_layer_is_the_models_own_output(tiny, fitted):
    plain = mr.project(tiny, probes(tiny))
    hidden = torch.randn(tiny.n_layers, 3, tiny.arch.unembed_weight.shape[1])
    for lens in fitted.values():
        moved = lens.transform(hidden)
        assert torch.equal(moved[-1], hidden[-1])
        assert not torch.equal(moved[0], hidden[0])  # the lens does move the other layers
        assert_same_results(mr.project(tiny, probes(tiny), lens=lens), plain, last_only=True)


def test_normal_equations_recover_a_known_affine_map():
    generator = torch.Generator().manual_seed(0)
    groups, rows, d_in, d_out = 3, 2000, 6, 4
    x = torch.randn(groups, rows, d_in, generator=generator) * 5 + 2
    weight = torch.randn(groups, d_out, d_in, generator=generator)
    bias = torch.randn(groups, d_out, generator=generator)
    y = x @ weight.transpose(1, 2) + bias.unsqueeze(1)
    sums = lenses.NormalEquations(groups, d_in, d_out)
    for start in range(0, rows, 300):  # batch by batch, uneven last batch
        sums.add(x[:, start:start + 300], y[:, start:start + 300])
    got_weight, got_bias = sums.solve(ridge=0.0)
    torch.testing.assert_close(got_weight.float(), weight, atol=1e-4, rtol=0)
    torch.testing.assert_close(got_bias.float(), bias, atol=1e-4, rtol=0)
    shrunk, _ = sums.solve(ridge=10.0)  # the penalty shrinks the map towards 0
    assert shrunk.norm() < 0.8 * got_weight.norm()


def test_shortcut_is_exact_when_the_last_layer_is_linear(tiny, data_dir):
    """The fit targets h_L - h_l: if h_L = h_l M^T + c exactly, the shortcut finds M - I, c."""
    text = lenses.wikitext_chunks(tiny, "valid", n_tokens=512, path=data_dir)
    hidden = torch.cat(list(lenses.hidden_batches(tiny, text)), dim=1)[:2]
    width = hidden.shape[-1]
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(width, width, generator=generator) / width**0.5
    offset = torch.randn(width, generator=generator)
    sums = lenses.NormalEquations(1, width, width)
    target = hidden[0] @ matrix.T + offset
    sums.add(hidden[:1], (target - hidden[0]).unsqueeze(0))
    weight, bias = sums.solve(ridge=0.0)
    moved = lenses.translate(hidden[:1].double(), weight, bias)[0]
    torch.testing.assert_close(moved.float(), target, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-gemma3"])
def test_fitted_lenses_beat_the_logit_lens_on_held_out_text(name, data_dir):
    lm = mr.load(name, device="cpu")
    fit_text = lenses.wikitext_chunks(lm, "valid", n_tokens=1024, path=data_dir)
    test_text = lenses.wikitext_chunks(lm, "test", n_tokens=512, path=data_dir)
    readers = {"logit lens": LogitLens(),
               "linear shortcut": lenses.LinearShortcut.fit(lm, fit_text),
               "tuned lens": lenses.TunedLens.fit(lm, fit_text, steps=60, lr=3e-3,
                                                  rows_per_step=128)}
    kl = lenses.held_out_kl(lm, test_text, readers)
    assert list(kl.columns) == lenses.KL_COLUMNS
    assert (kl["n_tokens"] == 512).all()
    last = kl[kl["layer"] == lm.n_layers - 1]
    assert last["kl_bits"].abs().max() < 1e-5
    early = kl[kl["layer"] < lm.n_layers - 1].pivot(index="layer", columns="lens",
                                                   values="kl_bits")
    assert (early["logit lens"] > 0.05).all()
    for lens in ("linear shortcut", "tuned lens"):
        assert (early[lens] < early["logit lens"]).all(), lens


def test_save_and_load_round_trip(tiny, fitted, tmp_path):
    for name, lens in fitted.items():
        path = lens.save(tmp_path / name.replace(" ", "_"))
        assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
        loaded = lenses.load_lens(path, tiny)
        assert type(loaded) is type(lens)
        assert torch.equal(loaded.weight, lens.weight) and torch.equal(loaded.bias, lens.bias)
        assert loaded.meta == lens.meta
        assert_same_results(mr.project(tiny, probes(tiny), lens=loaded),
                            mr.project(tiny, probes(tiny), lens=lens))


def test_metadata_says_what_the_lens_was_fitted_on(tiny, fitted):
    meta = fitted["tuned lens"].meta
    assert meta["model"] == tiny.name and meta["revision"] == tiny.revision
    assert meta["kind"] == "tuned_lens" and meta["hyperparameters"]["steps"] == 5
    assert meta["data"]["source"] == "wikitext-2/valid.txt"
    assert len(meta["data"]["sha256"]) == 64 and meta["data"]["n_tokens"] == 256
    assert len(meta["code_fingerprint"]) == 16 and "seed" in meta


def test_a_lens_refuses_another_model_or_revision(fitted, tiny, tmp_path):
    lens = fitted["linear shortcut"]
    other = mr.load("tiny-llama" if tiny.name != "tiny-llama" else "tiny-gpt2", device="cpu")
    with pytest.raises(lenses.LensMismatchError, match="fitted for"):
        mr.project(other, probes(other), lens=lens)
    path = lens.save(tmp_path / "shortcut")
    with pytest.raises(lenses.LensMismatchError):
        lenses.load_lens(path, other)
    moved_on = mr.wrap(tiny.model, tiny.tokenizer, name=tiny.name, revision="another-revision")
    with pytest.raises(lenses.LensMismatchError, match="another-revision"):
        lenses.load_lens(path, moved_on)


def test_text_chunks_hold_the_budget_and_skip_the_first_position(tiny, data_dir):
    text = lenses.wikitext_chunks(tiny, "valid", n_tokens=300, chunk_len=24, path=data_dir)
    assert text.n_tokens == 300 and text.ids.shape[1] == 24
    assert text.source == "wikitext-2/valid.txt" and len(text.sha256) == 64
    assert not text.scored[:, 0].any()
    if tiny.is_masked:  # a masked LM is read where it predicts: at masked tokens
        assert (text.ids[text.scored] == tiny.tokenizer.mask_token_id).all()
    paragraphs = [f"paragraph {i}: {PROMPTS[i % len(PROMPTS)]}" for i in range(40)]
    again = [lenses.text_chunks(tiny, paragraphs, n_tokens=50, chunk_len=12, seed=seed)
             for seed in (0, 0, 1)]
    assert torch.equal(again[0].ids, again[1].ids)
    assert torch.equal(again[0].scored, again[1].scored)
    assert not torch.equal(again[0].ids, again[2].ids)  # another seed, other chunks
    with pytest.raises(ValueError, match="asked for"):
        lenses.text_chunks(tiny, paragraphs, n_tokens=0)
    if not tiny.is_masked:  # a causal LM never reads a position twice
        with pytest.raises(ValueError, match="asked for"):
            lenses.text_chunks(tiny, paragraphs, n_tokens=10**6)


def test_pipeline_fits_each_lens_once_then_reads_the_cache(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    run = pipeline.settings("smoke", "tiny-gpt2", results_dir=tmp_path / "results",
                            figures_dir=tmp_path / "figures")
    lm = mr.load("tiny-gpt2", device="cpu")
    first = pipeline.fitted_lenses(lm, run)
    assert list(first) == list(pipeline.LENS_CHOICES)
    saved = sorted(run.cache_dir.glob("*.safetensors"))
    assert len(saved) == 2 and all(p.with_suffix(".json").is_file() for p in saved)
    again = pipeline.fitted_lenses(lm, run)
    for name in ("linear shortcut", "tuned lens"):
        assert again[name].fingerprint() == first[name].fingerprint()
        assert again[name].meta == first[name].meta  # read back, not refitted
    other = mr.wrap(lm.model, lm.tokenizer, name=lm.name, revision="another-revision")
    pipeline.fitted_lenses(other, run)  # another revision: fitted anew, never reused
    assert len(list(run.cache_dir.glob("*.safetensors"))) == 4
    kl = pipeline.lens_kl(lm, run, first)
    assert set(kl["lens"]) == set(pipeline.LENS_CHOICES) and (kl["model"] == lm.name).all()


def test_stored_lenses_are_read_from_the_cache_never_fitted(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    run = pipeline.settings("smoke", "tiny-gpt2", results_dir=tmp_path / "results",
                            figures_dir=tmp_path / "figures")
    lm = mr.load("tiny-gpt2", device="cpu")
    assert pipeline.stored_lenses(lm, run) == {}  # nothing cached: nothing fitted either
    assert not list(run.cache_dir.glob("*.safetensors"))
    fitted = pipeline.fitted_lenses(lm, run)  # what notebook 06 does
    stored = pipeline.stored_lenses(lm, run)
    assert list(stored) == [name for name in pipeline.LENS_CHOICES if name != "logit lens"]
    for name, lens in stored.items():
        assert lens.fingerprint() == fitted[name].fingerprint()
    # a quick run (its own smaller budget) finds the lenses of the profile's full budget
    small = pipeline.settings("smoke", "tiny-gpt2", results_dir=tmp_path / "results",
                              figures_dir=tmp_path / "figures", quick=True,
                              lens=replace(run.lens, fit_tokens=run.lens.fit_tokens // 2))
    assert small.lens != run.lens
    assert {n: lens.fingerprint() for n, lens in pipeline.stored_lenses(lm, small).items()} == {
        n: lens.fingerprint() for n, lens in stored.items()}
    # another model (or revision) has none; a lens whose file was damaged is not offered
    other = mr.wrap(lm.model, lm.tokenizer, name=lm.name, revision="another-revision")
    assert pipeline.stored_lenses(other, run) == {}
    tuned = next(p for p in run.cache_dir.glob("*tuned_lens*.safetensors"))
    tuned.write_bytes(tuned.read_bytes()[:-8] + bytes(8))
    assert list(pipeline.stored_lenses(lm, run)) == ["linear shortcut"]
    assert len(list(run.cache_dir.glob("*.safetensors"))) == 2  # and nothing refitted


def test_a_masked_lm_reads_a_short_text_again_with_other_masks():
    lm = mr.load("tiny-bert", device="cpu")
    paragraphs = [f"paragraph {i}: {PROMPTS[i % len(PROMPTS)]}" for i in range(8)]
    text = lenses.text_chunks(lm, paragraphs, n_tokens=200, chunk_len=12)
    assert text.n_tokens == 200
    assert len({tuple(row.tolist()) for row in text.ids}) > 1
