"""Issue 9, caches and outputs: nothing on disk is trusted unchecked, no work is lost.

The results cache and the converted-model cache are verified on read (corrupt, truncated,
mismatched entries are recomputed); a read-only or full cache costs only the caching; outputs
are written atomically; one run per profile at a time.
"""

import errno
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_notebooks import write_notebook

import memrecall as mr
from memrecall import cache, figures, pipeline, report, reproduce
from memrecall._io import CacheWarning, LockedError, exclusive_lock, repo_root
from memrecall.models import loading
from memrecall.models.tiny import build_tiny


@pytest.fixture(scope="module")
def lm():
    return mr.load("tiny-llama", device="cpu")


@pytest.fixture(scope="module")
def probes(lm):
    return mr.make_probes(["break the ice", "call it a day", "the early bird catches the worm",
                           "once in a blue moon"], lm)


@pytest.fixture(scope="module")
def reference(lm, probes):
    return mr.project(lm, probes)


def _assert_same(frame, reference):
    assert list(frame.columns) == list(reference.columns)
    for column in cache.ARRAY_COLUMNS:
        np.testing.assert_array_equal(np.stack(frame[column]), np.stack(reference[column]))
    assert frame.pred_token.tolist() == reference.pred_token.tolist()


def _only_file(folder: Path, pattern: str = "*.parquet") -> Path:
    (file,) = folder.glob(pattern)
    return file


def _cached(lm, probes, folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = pipeline.cached_project(lm, probes, folder)
    return frame, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


# --------------------------------------------------------------------------- results cache


def test_every_single_byte_corruption_is_recomputed_never_served(lm, probes, reference,
                                                                 tmp_path):
    pipeline.cached_project(lm, probes, tmp_path)
    file = _only_file(tmp_path)
    good = file.read_bytes()
    for offset in np.linspace(0, len(good) - 1, 12).astype(int):
        corrupt = bytearray(good)
        corrupt[offset] ^= 0x5A
        file.write_bytes(bytes(corrupt))
        frame, said = _cached(lm, probes, tmp_path)
        _assert_same(frame, reference)
        assert len(said) == 1 and "recomputing" in said[0] and file.name in said[0]
        assert file.read_bytes() == good  # replaced by the recomputed result


@pytest.mark.parametrize("damage", ["truncated", "empty", "sidecar missing", "sidecar corrupt",
                                    "sidecar truncated"])
def test_damaged_entries_are_recomputed_with_one_line(lm, probes, reference, tmp_path, damage):
    pipeline.cached_project(lm, probes, tmp_path)
    file = _only_file(tmp_path)
    sidecar = file.with_suffix(".json")
    if damage == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "empty":
        file.write_bytes(b"")
    elif damage == "sidecar missing":
        sidecar.unlink()
    elif damage == "sidecar corrupt":
        sidecar.write_text("{not json")
    else:
        sidecar.write_text(sidecar.read_text()[:40])
    frame, said = _cached(lm, probes, tmp_path)
    _assert_same(frame, reference)
    assert len(said) == 1 and "recomputing" in said[0]
    frame, said = _cached(lm, probes, tmp_path)  # healed: read back, silently
    _assert_same(frame, reference)
    assert said == []


def test_a_valid_file_of_another_input_set_is_not_used(lm, probes, reference, tmp_path):
    other = tmp_path / "other"
    pipeline.cached_project(lm, probes.iloc[:2], other)
    here = cache.cache_path(tmp_path, cache.result_key(
        lm, cache.frame_sha256(probes, ["prompt", "target_token"]), "project"))
    wrong = _only_file(other)
    shutil.copy(wrong, here)  # the file and its sidecar, under this key's name
    shutil.copy(wrong.with_suffix(".json"), here.with_suffix(".json"))
    frame, said = _cached(lm, probes, tmp_path)
    _assert_same(frame, reference)
    assert len(frame) == 4 and "another key" in said[0]


def test_a_replaced_file_under_an_intact_sidecar_is_not_used(lm, probes, reference, tmp_path):
    pipeline.cached_project(lm, probes, tmp_path)
    file = _only_file(tmp_path)
    other = cache.load_frame(file)
    other["target_rank"] = [row * 0 + 7 for row in other["target_rank"]]
    other.to_parquet(file, index=False)
    frame, said = _cached(lm, probes, tmp_path)
    _assert_same(frame, reference)
    assert said and "recomputing" in said[0]


def test_read_only_cache_keeps_the_result_and_warns(lm, probes, reference, unwritable):
    frame, said = _cached(lm, probes, unwritable)
    _assert_same(frame, reference)
    assert len(said) == 1 and "cannot be written" in said[0]
    assert not unwritable.exists() or list(unwritable.iterdir()) == []


def test_full_disk_keeps_the_result_and_warns(lm, probes, reference, tmp_path, monkeypatch):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "atomic_write", full)
    frame, said = _cached(lm, probes, tmp_path)
    _assert_same(frame, reference)
    assert "No space left" in said[0]


def test_the_cache_keeps_the_probes_index(lm, probes, tmp_path):
    filtered = probes.iloc[[3, 1]]
    first = pipeline.cached_project(lm, filtered, tmp_path)
    again = pipeline.cached_project(lm, filtered, tmp_path)
    assert first.index.tolist() == again.index.tolist() == [3, 1]


def test_fitted_lens_cache_is_verified_and_refitted_when_damaged(lm, tmp_path, data_dir):
    from memrecall import lenses

    text = lenses.wikitext_chunks(lm, "valid", n_tokens=128, path=data_dir)
    fits = []

    def fit():
        fits.append(1)
        return lenses.LinearShortcut.fit(lm, text)

    key = {"kind": "lens", "model": lm.name, "n": 1}
    first = pipeline.cached_lens(tmp_path, key, lm, fit)
    weights = _only_file(tmp_path, "*.safetensors")
    assert pipeline.cached_lens(tmp_path, key, lm, fit).fingerprint() == first.fingerprint()
    assert len(fits) == 1
    raw = bytearray(weights.read_bytes())
    raw[-8] ^= 0x40  # a translator weight changes; the file still loads
    weights.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match=r"refitting .*safetensors differs"):
        again = pipeline.cached_lens(tmp_path, key, lm, fit)
    assert len(fits) == 2 and again.fingerprint() == first.fingerprint()
    weights.with_suffix(".json").write_text("{}")
    with pytest.warns(CacheWarning, match=r"refitting .*\.json is 2 bytes"):
        pipeline.cached_lens(tmp_path, key, lm, fit)
    assert len(fits) == 3


# --------------------------------------------------------------------------- converted models


def _convert_counter():
    calls = []

    def convert():
        calls.append(1)
        return build_tiny("tiny-gpt2")

    return convert, calls


def _logits(model):
    with torch.inference_mode():
        return model(torch.tensor([[1, 2, 3, 4]])).logits


def test_converted_model_is_verified_and_reconverted_when_tampered(tmp_path):
    folder = tmp_path / "models" / "tiny-gpt2-v1"
    convert, calls = _convert_counter()
    model, _ = loading.converted_model(folder, convert, torch.float32)
    expected = _logits(model)
    assert (folder / loading.MANIFEST).is_file() and len(calls) == 1
    model, _ = loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 1  # verified and reused
    torch.testing.assert_close(_logits(model), expected)

    weights = folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-100] ^= 0xFF  # a weight changes; the file still loads
    weights.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match=r"reconverting.*model\.safetensors.*sha256"):
        model, _ = loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 2
    torch.testing.assert_close(_logits(model), expected)

    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.warns(CacheWarning, match=r"model\.safetensors is 1000 bytes"):
        model, _ = loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 3
    torch.testing.assert_close(_logits(model), expected)
    model, _ = loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 3


def test_a_converted_folder_without_manifest_is_reconverted(tmp_path):
    folder = tmp_path / "old"
    model, tokenizer = build_tiny("tiny-gpt2")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    convert, calls = _convert_counter()
    with pytest.warns(CacheWarning, match="manifest"):
        loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 1 and (folder / loading.MANIFEST).is_file()


def test_read_only_model_cache_still_gives_the_model(unwritable):
    convert, calls = _convert_counter()
    with pytest.warns(CacheWarning, match="cannot keep the converted model"):
        model, tokenizer = loading.converted_model(unwritable / "m", convert, torch.float32)
    assert len(calls) == 1 and len(tokenizer) > 0


# --------------------------------------------------------------------------- outputs, locks


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    saved = figures.save_figure(fig, tmp_path / "f")
    before = saved.pdf.read_bytes()
    real = fig.savefig

    def crash(path, **kwargs):
        real(path, **kwargs)
        Path(path).write_bytes(b"%PDF half")
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", crash)
    with pytest.raises(KeyboardInterrupt):
        figures.save_figure(fig, tmp_path / "f")
    plt.close(fig)
    assert saved.pdf.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]


def test_a_failed_png_keeps_the_old_pdf_and_png_together(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    old = plt.figure()
    old.gca().plot([0, 1], [0, 1])
    saved = figures.save_figure(old, tmp_path / "f")
    pair = saved.pdf.read_bytes(), saved.png.read_bytes()
    plt.close(old)
    new = plt.figure()
    new.gca().plot([0, 1], [1, 0])
    real = new.savefig

    def png_fails(path, **kwargs):
        if kwargs.get("format") == "png":
            raise OSError(28, "No space left on device")
        real(path, **kwargs)

    monkeypatch.setattr(new, "savefig", png_fails)
    with pytest.raises(OSError, match="No space left"):
        figures.save_figure(new, tmp_path / "f")
    plt.close(new)
    assert (saved.pdf.read_bytes(), saved.png.read_bytes()) == pair  # one run's pair, both old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]


def test_csv_round_trip_with_a_bare_carriage_return(tmp_path):
    frame = pd.DataFrame({"pred_piece": ["a\rb", "\r", "plain"], "rank": [1, 2, 3],
                          "is_memorized": [True, False, True]})
    path = report.write_csv(frame, tmp_path / "memorization.csv")
    back = pd.read_csv(path)
    assert len(back) == 3
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    plain = frame.assign(pred_piece=["a", "b", "c"])
    report.write_csv(plain, tmp_path / "plain.csv")
    assert (tmp_path / "plain.csv").read_text() == plain.to_csv(index=False)  # format unchanged


def test_the_lock_admits_one_holder_and_names_it(tmp_path):
    lock = tmp_path / ".reproduce.lock"
    with exclusive_lock(lock, "results/smoke"):
        with pytest.raises(LockedError,
                           match=rf"results/smoke: locked by another run.*pid {os.getpid()}"):
            with exclusive_lock(lock, "results/smoke"):
                pass
    with exclusive_lock(lock, "results/smoke"):  # released
        pass


def test_a_second_reproduce_of_a_profile_stops_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    ran = []
    monkeypatch.setattr(reproduce, "_run", lambda *args: ran.append(args) or 0)
    with exclusive_lock(tmp_path / "results" / "smoke" / ".reproduce.lock", "smoke"):
        assert reproduce.main(["--profile", "smoke"]) == 3
    assert not ran and "locked by another run" in capsys.readouterr().err
    assert reproduce.main(["--profile", "smoke"]) == 0 and len(ran) == 1


def test_a_killed_kernel_is_named_and_its_notebook_kept(tmp_path):
    source = write_notebook(tmp_path / "98_killed.ipynb", "x = 1",
                            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    output = tmp_path / "rendered" / "98_killed.ipynb"
    with pytest.raises(reproduce.NotebookFailed, match="98_killed.ipynb: the kernel died") as err:
        reproduce.run_notebook(source, output, {"profile": "smoke"})
    assert not output.exists()
    assert err.value.failed_copy == tmp_path / "rendered" / "98_killed.failed.ipynb"
    assert err.value.failed_copy.is_file()


def test_make_passes_variables_as_text_never_as_commands(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake / "python").chmod(0o755)
    injected = tmp_path / "injected"
    stamp = tmp_path / "no-stamp"  # -o: never (re)build the environment here
    out = subprocess.run(
        ["make", "-s", "-C", str(repo_root()), f"STAMP={stamp}", "-o", str(stamp),
         "-o", "git-filter", "reproduce",
         f"BIN={fake}", f"MODELS=x; touch {injected}", "PROFILE=smoke';touch " + str(injected)
         + "'", f"DEVICE=$(touch {injected})", f"BATCH_SIZE=`touch {injected}`"],
        capture_output=True, text=True, timeout=60, check=True)
    assert not injected.exists()
    args = out.stdout.splitlines()
    assert args[args.index("--models") + 1] == f"x; touch {injected}"
    assert args[args.index("--profile") + 1] == f"smoke';touch {injected}'"
    assert args[args.index("--batch-size") + 1] == f"`touch {injected}`"


@pytest.mark.parametrize("variable", ["MODELS", "PROFILE", "DEVICE", "BATCH_SIZE", "DTYPE"])
@pytest.mark.parametrize("how", ["command line", "environment"])
def test_make_never_expands_a_make_function_in_a_variable(tmp_path, variable, how):
    injected = tmp_path / "injected"
    value = f"$(shell touch {injected})"
    stamp = tmp_path / "no-stamp"
    command = ["make", "-n", "-C", str(repo_root()), f"STAMP={stamp}", "-o", str(stamp),
               "-o", "git-filter", "reproduce"]
    env = dict(os.environ)
    if how == "command line":
        command.append(f"{variable}={value}")
    else:
        env[variable] = value
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env,
                         check=True)
    assert not injected.exists()
    assert f"'{value}'" in out.stdout  # passed on as one quoted word, unexpanded



@pytest.mark.slow
def test_corrupting_every_cache_file_gives_the_same_summary(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMRECALL_PLAIN_PROGRESS", "1")
    out = tmp_path / "results"
    parameters = {"profile": "smoke", "results_dir": str(out),
                  "figures_dir": str(tmp_path / "figures"), "interactive": False}
    notebook = reproduce.NOTEBOOKS / "03_layerwise_projection.ipynb"
    reproduce.run_notebook(notebook, tmp_path / "first.ipynb", parameters)
    summary = (out / "summary.csv").read_bytes()
    files = sorted(p for p in (out / "cache").rglob("*") if p.is_file())
    assert len(files) >= 8
    for number, file in enumerate(files):  # in place: flip a byte, or cut the file short
        raw = bytearray(file.read_bytes())
        if number % 2:
            raw[len(raw) // 2] ^= 0x01
        else:
            del raw[len(raw) // 2:]
        file.write_bytes(bytes(raw))
    (out / "summary.csv").unlink()
    reproduce.run_notebook(notebook, tmp_path / "second.ipynb", parameters)
    assert (out / "summary.csv").read_bytes() == summary
