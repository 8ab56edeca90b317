"""The results cache: round trip, keys, atomic writes, no recomputation of what is done."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import memrecall as mr
from memrecall import cache, pipeline
from memrecall._io import code_fingerprint, sha256_file

PACKAGE = Path(cache.__file__).resolve().parent


@pytest.fixture(scope="module")
def lm():
    return mr.load("tiny-llama", device="cpu")


@pytest.fixture(scope="module")
def probes(lm):
    return mr.make_probes(["break the ice", "call it a day", "the early bird catches the worm"],
                          lm)


def test_round_trip_keeps_arrays_and_types(lm, probes, tmp_path):
    res = mr.project(lm, probes)
    cache.save_frame(res, tmp_path / "r.parquet", provenance={"model": "x"})
    back = cache.load_frame(tmp_path / "r.parquet")
    assert list(back.columns) == list(res.columns)
    for column in cache.ARRAY_COLUMNS:
        np.testing.assert_array_equal(np.stack(back[column]), np.stack(res[column]))
        assert isinstance(back[column][0], np.ndarray)
    assert back.is_memorized.dtype == bool
    sidecar = json.loads((tmp_path / "r.json").read_text())
    assert sidecar["key"] == {"model": "x"} and sidecar["rows"] == len(res)
    assert sidecar["files"]["r.parquet"]["sha256"] == sha256_file(tmp_path / "r.parquet")


def test_numbers_under_an_array_column_name_stay_numbers(tmp_path):
    """A knockout sweep's per-probe ``target_prob`` is one number per row, not a layer array."""
    frame = pd.DataFrame({"probe": [0, 1], "target_prob": [0.25, 0.5], "pred_rank": [1, 2]})
    cache.save_frame(frame, tmp_path / "k.parquet", provenance={"model": "x"})
    back = cache.load_frame(tmp_path / "k.parquet")
    assert back["target_prob"].dtype == np.float64 and back["pred_rank"].dtype == np.int64
    pd.testing.assert_frame_equal(back, frame)


def test_cached_project_computes_once(lm, probes, tmp_path, monkeypatch):
    first = pipeline.cached_project(lm, probes, tmp_path)
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) == 1 and files[0].name.startswith("tiny-llama__project__")

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a cached result")

    monkeypatch.setattr("memrecall.lenses.projection.project", must_not_run)
    again = pipeline.cached_project(lm, probes, tmp_path)
    np.testing.assert_array_equal(np.stack(again.target_rank), np.stack(first.target_rank))
    provenance = json.loads(files[0].with_suffix(".json").read_text())["key"]
    assert provenance["model"] == "tiny-llama" and provenance["revision"] == "seed=0"
    assert provenance["code_fingerprint"] == code_fingerprint()


def test_key_changes_with_inputs_and_model(lm, probes, tmp_path):
    pipeline.cached_project(lm, probes, tmp_path)
    pipeline.cached_project(lm, probes.iloc[:2], tmp_path)
    pipeline.cached_project(mr.load("tiny-gpt2", device="cpu"),
                           mr.make_probes(["break the ice"], mr.load("tiny-gpt2")), tmp_path)
    assert len(list(tmp_path.glob("*.parquet"))) == 3


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    frame = pd.DataFrame({"a": [1, 2]})

    def crash(self, path, **kwargs):
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.save_frame(frame, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []


def test_cache_disabled_with_none(lm, probes):
    res = cache.cached(None, {"model": "m", "kind": "k"}, lambda: pd.DataFrame({"x": [1]}))
    assert res.x.tolist() == [1]


def test_editing_a_source_file_changes_the_fingerprint_and_the_cache_key(lm, probes, tmp_path,
                                                                         monkeypatch):
    copy = tmp_path / "memrecall"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_fingerprint(copy) == code_fingerprint() == code_fingerprint(PACKAGE)
    key = cache.result_key(lm, "sha", "project")
    assert key["code_fingerprint"] == code_fingerprint()

    lens = copy / "lenses" / "projection.py"
    lens.write_text(lens.read_text() + "\n# an edit\n")
    edited = code_fingerprint(copy)
    assert edited != code_fingerprint() and len(edited) == 16
    monkeypatch.setattr(cache, "code_fingerprint", lambda: edited)
    edited_key = cache.result_key(lm, "sha", "project")
    assert cache.cache_path(tmp_path, edited_key) != cache.cache_path(tmp_path, key)

    (copy / "models" / "extra.py").write_text("# a new module\n")
    assert code_fingerprint(copy) != edited


def test_a_source_edit_recomputes_instead_of_reusing(lm, probes, tmp_path, monkeypatch):
    pipeline.cached_project(lm, probes, tmp_path)
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "0123456789abcdef")
    pipeline.cached_project(lm, probes, tmp_path)
    assert len(list(tmp_path.glob("*.parquet"))) == 2


def test_reproduce_records_the_code_next_to_results_and_in_notebooks(tmp_path):
    import nbformat

    from memrecall.reproduce import stamp_notebook, write_fingerprint

    record = write_fingerprint(tmp_path / "results")
    stored = json.loads((tmp_path / "results" / "fingerprint.json").read_text())
    assert stored == record and stored["code_fingerprint"] == code_fingerprint()
    assert {"git_revision", "git_dirty"} <= set(stored)

    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    stamp_notebook(path, code_fingerprint())
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata["memrecall"]["code_fingerprint"] == code_fingerprint()
