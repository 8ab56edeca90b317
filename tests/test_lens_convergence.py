"""The tuned lens's start, objective and checkpoints; the convergence rule of notebook 06."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import memrecall as mr
from memrecall import analysis, figures, lenses, pipeline, report
from memrecall.analysis.claims import merge_claims
from memrecall.lenses.base import LogitLens
from memrecall.lenses.tuned import _kl, _target


@pytest.fixture(scope="module")
def gpt2():
    return mr.load("tiny-gpt2", device="cpu")


@pytest.fixture(scope="module")
def texts(gpt2, data_dir):
    """Fit text and a held-out slice of valid.txt, and test.txt."""
    fit, held = lenses.wikitext_chunks(gpt2, "valid", n_tokens=1024 + 128,
                                       path=data_dir).split(128)
    return fit, held, lenses.wikitext_chunks(gpt2, "test", n_tokens=512, path=data_dir)


@pytest.fixture(scope="module")
def shortcut(gpt2, texts):
    return lenses.LinearShortcut.fit(gpt2, texts[0])


def test_split_holds_out_the_last_chunks(gpt2, data_dir):
    text = lenses.wikitext_chunks(gpt2, "valid", n_tokens=400, chunk_len=16, path=data_dir)
    fit, held = text.split(50)
    assert held.n_tokens >= 50 and held.n_tokens - 50 < 15  # whole chunks, the fewest that do
    assert fit.n_tokens + held.n_tokens == text.n_tokens
    assert torch.equal(torch.cat([fit.ids, held.ids]), text.ids)
    for bad in (0, 400):
        with pytest.raises(ValueError, match="hold out"):
            text.split(bad)


def test_importance_weights_make_the_sampled_normaliser_unbiased():
    """Over many draws, the weighted sum of exp(logit) over the sample equals the full sum.

    Tolerance: 4 standard errors of the Monte Carlo mean (2,000 seeded draws).
    """
    generator = torch.Generator().manual_seed(0)
    vocab = 3000
    log_final = torch.log_softmax(torch.randn(4, vocab, generator=generator) * 3, dim=-1)
    lens_logits = torch.randn(vocab, generator=generator) * 2
    exact = lens_logits.exp().sum().item()
    estimates = []
    for _ in range(2000):
        ids, log_weights = lenses.sampled_vocabulary(log_final, 200, 8, generator)
        assert len(ids.unique()) == len(ids)  # no token twice
        assert math.isclose(log_weights.exp().sum().item(), vocab, rel_tol=1e-5)
        estimates.append((lens_logits[ids] + log_weights).exp().sum().item())
    estimates = np.array(estimates)
    se = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * se
    # the rows' top tokens are always in, with weight 1
    ids, log_weights = lenses.sampled_vocabulary(log_final, 200, 8, generator)
    top = log_final.topk(8, dim=1).indices.unique()
    assert set(top.tolist()) <= set(ids[log_weights == 0].tolist())
    assert lenses.sampled_vocabulary(log_final, vocab, 8, generator) == (None, None)


def test_sampled_kl_estimates_the_exact_kl(gpt2, texts):
    """The importance-weighted KL averages (over draws) to the exact KL, within 4 SE."""
    hidden = next(lenses.hidden_batches(gpt2, texts[0]))[:, :64]
    log_final, entropy = _target(gpt2, hidden[-1])
    logits = gpt2.head.logits_at(gpt2.head.normalize(hidden[0]))
    exact = _kl(log_final, entropy, logits, None, None).mean().item()
    generator = torch.Generator().manual_seed(1)
    draws = []
    for _ in range(300):
        ids, log_weights = lenses.sampled_vocabulary(log_final, 64, 4, generator)
        draws.append(_kl(log_final, entropy, logits[:, ids], ids, log_weights).mean().item())
    draws = np.array(draws)
    # the log of an unbiased normaliser is biased low by about var/2: allow it plus 4 SE
    assert abs(draws.mean() - exact) < 4 * draws.std(ddof=1) / np.sqrt(len(draws)) + 0.05 * exact
    assert exact > 0


def test_zero_steps_from_the_shortcut_is_the_shortcut(gpt2, texts, shortcut):
    tuned = lenses.TunedLens.fit(gpt2, texts[0], init=shortcut, steps=0, rows_per_step=64)
    assert torch.equal(tuned.weight, shortcut.weight)
    # the offset is stored in units of each layer's scale and multiplied back: float rounding
    torch.testing.assert_close(tuned.bias, shortcut.bias, rtol=1e-6, atol=1e-6)
    assert tuned.meta["hyperparameters"]["init"] == f"linear_shortcut {shortcut.fingerprint()}"
    assert tuned.meta["train_kl_bits"] == []


def test_each_layer_keeps_its_best_checkpoint(gpt2, texts, shortcut):
    """A learning rate far too large ruins the translators; the monitor keeps the start."""
    fit, held, _ = texts
    ruined = lenses.TunedLens.fit(gpt2, fit, init=shortcut, steps=6, lr=3.0, rows_per_step=64,
                                  monitor=held, monitor_every=3)
    monitor = ruined.meta["monitor"]
    assert monitor["steps"] == [0, 3, 6] and monitor["n_tokens"] == held.n_tokens
    curves = np.array(monitor["kl_bits_by_layer"])  # checkpoints x layers
    assert curves.shape == (3, gpt2.n_layers - 1)
    kept = monitor["kept_step_by_layer"]
    for layer, step in enumerate(kept):
        assert curves[monitor["steps"].index(step), layer] == curves[:, layer].min()
    assert (curves[-1] > curves[0]).any()  # training did get worse somewhere...
    for layer, step in enumerate(kept):   # ...and there the start was kept, bit for bit
        if step == 0:
            assert torch.equal(ruined.weight[layer], shortcut.weight[layer])
    assert len(ruined.meta["train_kl_bits"]) == 6
    assert math.isclose(monitor["kl_bits"][0], curves[0].mean(), rel_tol=1e-3)


def test_tuned_from_the_shortcut_passes_the_rule_on_held_out_text(gpt2, texts, shortcut):
    fit, held, test = texts
    tuned = lenses.TunedLens.fit(gpt2, fit, init=shortcut, steps=24, lr=1e-3, rows_per_step=128,
                                 vocab_sample=256, monitor=held, monitor_every=8)
    readers = {"logit lens": LogitLens(), "linear shortcut": shortcut, "tuned lens": tuned}
    kl = lenses.held_out_kl(gpt2, test, readers).assign(model=gpt2.name)
    admission = analysis.lens_admission(kl)
    assert admission["admitted"].all(), admission.to_dict("records")
    assert (admission["worst_excess_bits"] <= 0).all()


def kl_table(**lenses_bits) -> pd.DataFrame:
    """A constructed ``lens_kl.csv`` of one model with 4 layers: {lens: [(kl, se), ...]}."""
    return pd.DataFrame([{"model": "m", "lens": lens.replace("_", " "), "layer": layer,
                          "kl_bits": kl, "se_bits": se, "n_tokens": 4096}
                         for lens, values in lenses_bits.items()
                         for layer, (kl, se) in enumerate(values)])


LOGIT = [(5.0, 0.1), (4.0, 0.1), (2.0, 0.1), (0.0, 0.0)]
SHORTCUT = [(2.0, 0.03), (1.5, 0.03), (1.0, 0.03), (0.0, 0.0)]


def test_the_rule_admits_within_two_standard_errors_and_names_failing_layers():
    # tuned vs shortcut: layer 1 better; layer 2 worse by 0.05 with se 0.03 and 0.04
    # (tolerance 2 * 0.05 = 0.1: passes); layer 3 worse by 0.2 (fails); the last layer, where
    # every lens is the output, is never judged even if a table says otherwise
    tuned = [(1.9, 0.03), (1.55, 0.04), (1.2, 0.03), (9.0, 0.0)]
    admission = analysis.lens_admission(kl_table(logit_lens=LOGIT, linear_shortcut=SHORTCUT,
                                                 tuned_lens=tuned)).set_index("lens")
    assert list(admission.columns) == [c for c in analysis.ADMISSION_COLUMNS if c != "lens"]
    assert admission.loc["linear shortcut", "admitted"]
    assert not admission.loc["tuned lens", "admitted"]
    assert admission.loc["tuned lens", "failing_layers"] == "3 (linear shortcut)"
    assert math.isclose(admission.loc["tuned lens", "worst_excess_bits"],
                        0.2 - 2 * math.hypot(0.03, 0.03))
    worse = analysis.lens_admission(kl_table(
        logit_lens=LOGIT, linear_shortcut=[(5.5, 0.1), *SHORTCUT[1:]], tuned_lens=SHORTCUT))
    worse = worse.set_index("lens")
    assert worse.loc["linear shortcut", "failing_layers"] == "1 (logit lens)"
    assert worse.loc["tuned lens", "admitted"]  # judged against each reference on its own
    assert analysis.layer_runs([9, 1, 2, 3, 7, 10]) == "1-3, 7, 9-10"
    with pytest.raises(ValueError, match="no held-out KL of 'tuned lens'"):
        analysis.lens_admission(kl_table(logit_lens=LOGIT, linear_shortcut=SHORTCUT))


def test_a_lens_left_out_is_named_in_the_verdicts_and_retracted_from_claims():
    admission = pd.DataFrame([
        {"model": "m", "lens": "linear shortcut", "admitted": True, "failing_layers": "",
         "worst_excess_bits": -0.1, "rule": "r"},
        {"model": "m", "lens": "tuned lens", "admitted": False, "failing_layers": "3 (logit lens)",
         "worst_excess_bits": 0.2, "rule": "r"}])
    tests = pd.DataFrame([{"model": "m", "lens": lens, "a": "memorized", "b": "non-memorized",
                           "measure": measure, "rank_biserial": delta, "p_value": 0.001, "note": ""}
                          for lens in ("logit lens", "linear shortcut", "tuned lens")
                          for measure, delta in (("promotion_layer", -0.3),
                                                 ("confidence_boost", 0.3))])
    verdicts = report.lens_verdicts(tests, admission=admission).set_index("lens")["change"]
    assert verdicts["logit lens"] == "baseline" and verdicts["linear shortcut"] == "survives"
    assert verdicts["tuned lens"] == "left out: not converged (layers 3 (logit lens))"
    ids = {"m": {"logit lens": "logit", "linear shortcut": "shortcut", "tuned lens": "tuned"}}
    retract = pipeline.left_out_claims(admission, ids)
    assert retract == [{"model": "m", "lens": "tuned"}]
    old = analysis.claims_frame([
        {"claim": "boost_vs_nonmem", "model": model, "population": "filtered", "lens": lens,
         "statistic": "s", "value": 0.1, "ci_low": 0.0, "ci_high": 0.2, "p_value": 0.01,
         "n": 10, "verdict": "supported"}
        for model in ("m", "other") for lens in ("logit", "tuned")])
    merged = merge_claims(old, old.iloc[:0], retract)
    assert sorted(zip(merged["model"], merged["lens"], strict=True)) == [
        ("m", "logit"), ("other", "logit"), ("other", "tuned")]


def test_training_figure_draws_the_objective_and_the_monitor(tmp_path):
    meta = {"train_kl_bits": [2.0, 1.8, 1.7, 1.65],
            "monitor": {"steps": [0, 2, 4], "kl_bits": [2.1, 1.9, 1.85], "n_tokens": 128}}
    saved = figures.plot_tuned_training({"model a": meta, "model b": meta}, tmp_path / "train")
    axes = saved.figure.axes
    assert len(axes) == 2 and axes[0].get_title() == "model a"
    lines = {line.get_gid(): line for line in axes[0].get_lines()}
    assert list(lines["monitor"].get_xdata()) == [0, 2, 4]
    assert list(lines["train"].get_ydata()) == meta["train_kl_bits"]
    assert (tmp_path / "train.png").is_file()


def test_a_start_fitted_for_another_model_is_refused(texts, shortcut):
    other = mr.load("tiny-llama", device="cpu")
    with pytest.raises(lenses.LensMismatchError, match="fitted for"):
        lenses.TunedLens.fit(other, texts[0], init=shortcut, steps=1)
