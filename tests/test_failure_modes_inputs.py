"""Issue 9, inputs: every bad input gets a clear error (or warning) naming what is wrong.

Texts longer than the context window, bad batch sizes, empty input, missing values, substituted
files, undecodable bytes, incomplete model folders, a device that is not there, a network that
never answers, and a tokenizer that must be the same in every process.
"""

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_ranks_match

import memrecall as mr
from memrecall import pipeline, reproduce
from memrecall._io import repo_root
from memrecall.data import DATA_SOURCES, DataFormatError, DataNotFoundError, load_idiomem
from memrecall.lenses.projection import reference_logits
from memrecall.models import DeviceUnavailableError, ModelFolderError
from memrecall.probes import PROBE_COLUMNS, SharedTargetWarning

LIB = str(repo_root() / "lib")


# --------------------------------------------------------------------------- the lens's inputs


def test_texts_longer_than_the_context_window_name_row_length_and_limit(tiny):
    assert tiny.max_length == 128
    prompts = ["break the ice", " ".join(["day"] * 300)]
    with pytest.raises(ValueError, match=r"row 1: the prompt is \d{3} tokens long .* context "
                                         r"window of 128 tokens"):
        mr.project(tiny, prompts)


@pytest.mark.parametrize("bad", [0, -3, "abc", 1.5, True, "2.5"])
def test_bad_batch_sizes_are_refused_everywhere(bad, capsys):
    lm = mr.load("tiny-gpt2", device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
        mr.project(lm, ["break the ice"], batch_size=bad)
    with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
        pipeline.settings("smoke", results_dir=None, root=Path("/nonexistent"), batch_size=bad)
    if not isinstance(bad, bool):
        with pytest.raises(SystemExit):
            reproduce.main(["--profile", "smoke", "--batch-size", str(bad)])
        assert "batch_size must be a positive whole number" in capsys.readouterr().err


def test_good_batch_sizes_give_the_same_numbers():
    lm = mr.load("tiny-gpt2", device="cpu")
    probes = mr.make_probes(["break the ice", "call it a day", "once in a blue moon"], lm)
    one, auto = mr.project(lm, probes, batch_size=1), mr.project(lm, probes, batch_size=None)
    # batches of one against one batch of three: equal up to float ties (conftest)
    logits = torch.stack([reference_logits(lm, prompt) for prompt in probes.prompt])
    assert_ranks_match(np.stack(one.target_rank), np.stack(auto.target_rank), logits,
                       torch.tensor(probes.target_token.to_numpy()).view(-1, 1))


@pytest.mark.parametrize("empty", [[], pd.Series([], dtype=object),
                                   pd.DataFrame({"prompt": [], "target": []})],
                         ids=["list", "series", "frame"])
def test_empty_input_gives_an_empty_frame_with_the_columns(tiny, empty):
    probes = mr.make_probes(empty, tiny)
    assert len(probes) == 0 and list(probes.columns)[:4] == PROBE_COLUMNS
    res = mr.project(tiny, probes)
    assert len(res) == 0
    assert {"pred_token", "is_memorized", "pred_rank", "target_rank"} <= set(res.columns)
    assert list(mr.project(tiny, []).columns) == ["prompt", "pred_token", "pred_rank",
                                                  "pred_prob"]


# --------------------------------------------------------------------------- probes


def test_probes_and_results_keep_the_input_index():
    lm = mr.load("tiny-llama", device="cpu")
    frame = pd.DataFrame({"text": ["break the ice", "hello there", "call it a day",
                                   "once in a blue moon"], "keep": [True, False, True, True]})
    kept = frame[frame.keep]
    probes = mr.make_probes(kept["text"], lm)
    assert probes.index.tolist() == [0, 2, 3]
    res = mr.project(lm, probes)
    assert res.index.tolist() == [0, 2, 3]
    kept = kept.assign(target=res["target"])  # assignment aligns on the index
    assert kept.set_index("text")["target"].to_dict() == {
        "break the ice": "ice", "call it a day": "day", "once in a blue moon": "moon"}
    facts = pd.DataFrame({"prompt": ["The capital of France is", "Water is"],
                          "target": ["Paris", "wet"]}, index=[10, 7])
    assert mr.make_probes(facts, lm).index.tolist() == [10, 7]


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_values_in_a_facts_frame_name_the_row(missing):
    lm = mr.load("tiny-gpt2", device="cpu")
    facts = pd.DataFrame({"prompt": ["The capital of France is", "Water is"],
                          "target": ["Paris", missing]}, index=[4, 9])
    with pytest.raises(DataFormatError, match=r"row 1 \(index 9\): target is .*missing value"):
        mr.make_probes(facts, lm)
    with pytest.raises(DataFormatError, match=r"row 1: expected a string, got a missing value"):
        mr.make_probes(["break the ice", missing], lm)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-gemma3", "tiny-bert"])
def test_targets_that_become_unk_or_a_bare_space_are_counted_in_a_warning(name):
    lm = mr.load(name, device="cpu")
    texts = ["a big 😀", "the cat sat on 中文", "break the ice", "we saw 🎉"]
    with pytest.warns(SharedTargetWarning, match=r"3 of 4 texts .* share one target token"):
        mr.make_probes(texts, lm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharedTargetWarning)
        mr.make_probes(["break the ice", "call it a day"], lm)


def test_tiny_tokenizers_are_the_same_in_every_process():
    script = ("import hashlib, json\nfrom memrecall.models.tiny import TINY_MODELS\n"
              "for name, (tok, _) in TINY_MODELS.items():\n"
              "    vocab = json.dumps(sorted(tok().get_vocab().items()))\n"
              "    print(name, hashlib.sha256(vocab.encode()).hexdigest())\n")
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": LIB})
            for seed in ("1", "2")]
    outputs = {run.communicate(timeout=300)[0] for run in runs}
    assert len(outputs) == 1 and "tiny-bert" in outputs.pop()


# --------------------------------------------------------------------------- data files


def test_an_explicit_path_that_does_not_exist_is_an_error_not_a_fallback(data_dir, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))  # a good copy is there
    with pytest.raises(DataNotFoundError, match=r"nope\.jsonl, does not exist"):
        load_idiomem(tmp_path / "nope.jsonl")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        mr.load_wiki(n=5, path=tmp_path / "empty-folder")


def test_a_directory_where_the_file_should_be_is_named(tmp_path, monkeypatch):
    (tmp_path / DATA_SOURCES["idiomem"].relpath).mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="is a directory, not a file"):
        load_idiomem(tmp_path / DATA_SOURCES["idiomem"].relpath)
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="is a directory, not a file"):
        load_idiomem()


def test_non_utf8_bytes_name_the_file_and_line(data_dir, tmp_path):
    bad = tmp_path / "idiomem.jsonl"
    lines = (data_dir / DATA_SOURCES["idiomem"].relpath).read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"a", b"\xff", 1)
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=rf"{bad}: line 3: not UTF-8 text \(byte 0xff"):
        load_idiomem(bad)


def test_the_wiki_hub_fallback_gives_up_when_the_network_never_answers(tmp_path, monkeypatch):
    """In-process, so that no timeout of ours depends on how fast a loaded machine starts a
    Python: the one clock is the hub check's own socket timeout (a server that accepts and
    never answers). Unfixed, this waited minutes."""
    from huggingface_hub import constants

    from memrecall.data import sources, wikitext

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections are accepted (by the kernel) and never answered
    port = silent.getsockname()[1]
    for name in ("MEMRECALL_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(sources, "default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(sources, "download", lambda url, timeout=0: (_ for _ in ()).throw(
        OSError("no network in tests")))
    monkeypatch.setattr(wikitext, "HUB_TIMEOUT_S", 1.0)
    monkeypatch.setattr(wikitext.check_hub_answers, "__defaults__", (1.0,))
    monkeypatch.setattr(wikitext, "_WIKI_CACHE", {})
    try:
        with pytest.raises(DataNotFoundError, match=rf"hub at http://127.0.0.1:{port} did not "
                                                    r"answer within 1 s"):
            wikitext.load_wiki(n=5)
    finally:
        silent.close()


# --------------------------------------------------------------------------- models


@pytest.fixture
def saved_tiny(tmp_path):
    lm = mr.load("tiny-gpt2", device="cpu")
    folder = tmp_path / "model"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def test_a_model_folder_without_tokenizer_is_refused(saved_tiny):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (saved_tiny / name).unlink()
    with pytest.raises(ModelFolderError, match="has no tokenizer"):
        mr.load(saved_tiny, device="cpu")


def test_an_empty_folder_or_one_without_config_is_refused(saved_tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="is an empty folder"):
        mr.load(tmp_path / "empty", device="cpu")
    (saved_tiny / "config.json").unlink()
    with pytest.raises(ModelFolderError, match="has no config.json"):
        mr.load(saved_tiny, device="cpu")


def test_truncated_weights_name_the_file(saved_tiny):
    weights = saved_tiny / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ModelFolderError, match=rf"{weights}: 5000 bytes .*truncated"):
        mr.load(saved_tiny, device="cpu")
    weights.write_bytes(b"")
    with pytest.raises(ModelFolderError, match=str(weights)):
        mr.load(saved_tiny, device="cpu")


def test_a_missing_gguf_file_is_not_taken_for_a_hub_id(monkeypatch):
    monkeypatch.setattr("memrecall.models.loading._load_hub", lambda *a: pytest.fail("hub"))
    with pytest.raises(ModelFolderError, match=r"nope/model.gguf: no such .gguf file"):
        mr.load("nope/model.gguf")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_fails_before_any_work(monkeypatch, capsys):
    monkeypatch.setattr("memrecall.models.loading._load", lambda *a: pytest.fail("loaded"))
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        mr.load("tiny-gpt2", device="cuda")
    monkeypatch.setattr(reproduce, "preflight", lambda models: pytest.fail("preflight ran"))
    assert reproduce.main(["--profile", "smoke", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
