"""provenance.json: every writer of a results file records the code that made it, under a lock."""

from __future__ import annotations

import json
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from memrecall import report, reproduce
from memrecall._io import CacheWarning, LockedError, code_fingerprint, exclusive_lock
from memrecall.report import provenance

ROW = {"analysis": "table3", "quantity": "q", "model": "m", "ours": 1.0,
       "paper_model": "gpt2-medium", "paper_value": 2.0, "verdict": "differs"}
KNOCKOUT = {"group": "memorized", "control": "dominant", "k": 10, "start_layer": 0,
            "end_layer": 0, "n_probes": 3, "changed_pct": 50.0, "target_rank_change": 1.0,
            "target_prob_change": -2.0}


def _records(folder):
    return json.loads((folder / report.PROVENANCE).read_text())


WRITERS = {
    "write_csv": lambda path: report.write_csv(pd.DataFrame({"a": [1, 2]}), path),
    "merge_comparison": lambda path: report.merge_comparison(
        path, report.comparison_frame([ROW])),
    "write_knockouts_csv": lambda path: report.write_knockouts_csv(
        pd.DataFrame([KNOCKOUT]), path),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_each_writer_records_the_code_that_made_its_file(tmp_path, writer):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    WRITERS[writer](tmp_path / "made.csv")
    record = _records(tmp_path)["made.csv"]
    assert record["code_fingerprint"] == code_fingerprint()
    written = datetime.fromisoformat(record["written"])
    assert written.utcoffset() == timedelta(0)  # UTC, stated in the text
    assert before <= written <= datetime.now(timezone.utc)


def test_entries_of_other_files_are_kept_and_a_rewrite_replaces_its_own(tmp_path):
    with report.recorded(tmp_path / "a.csv", fingerprint="old") as path:
        path.write_text("x\n")
    with report.recorded(tmp_path / "b.csv", fingerprint="other") as path:
        path.write_text("y\n")
    report.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    records = report.read_provenance(tmp_path)
    assert {n: r["code_fingerprint"] for n, r in records.items()} \
        == {"a.csv": code_fingerprint(), "b.csv": "other"}


def test_a_failed_write_records_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), report.recorded(tmp_path / "a.csv"):
        raise RuntimeError("boom")
    assert report.read_provenance(tmp_path) == {}


def test_concurrent_writers_lose_no_entry(tmp_path):
    def write(worker):
        for i in range(5):
            report.write_csv(pd.DataFrame({"a": [worker, i]}), tmp_path / f"w{worker}_{i}.csv")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(report.read_provenance(tmp_path)) \
        == sorted(f"w{w}_{i}.csv" for w in range(8) for i in range(5))


def test_concurrent_merges_keep_both_analyses(tmp_path):
    path = tmp_path / "paper_comparison.csv"
    analyses = ["table3", "figure3", "table4", "table5"]
    threads = [threading.Thread(target=report.merge_comparison,
                                args=(path, report.comparison_frame([{**ROW, "analysis": a}])))
               for a in analyses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(pd.read_csv(path)["analysis"]) == sorted(analyses)


def test_a_writer_waits_for_the_folder_lock(tmp_path):
    done = threading.Event()

    def write():
        report.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
        done.set()

    with exclusive_lock(tmp_path / provenance.LOCK, "test"):
        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.5)  # it waits while another holds the lock...
    assert done.wait(30)  # ...and writes once it is free
    thread.join()
    assert "a.csv" in report.read_provenance(tmp_path)


def test_exclusive_lock_waits_at_most_wait_s(tmp_path):
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, "the test folder"):
        start = time.monotonic()
        with pytest.raises(LockedError, match="the test folder: locked by another run"), \
                exclusive_lock(lock, "the test folder", wait_s=0.3):
            pass
        assert time.monotonic() - start >= 0.3
    with exclusive_lock(lock, "the test folder", wait_s=0.3):  # free again
        pass


@pytest.mark.parametrize("content", [
    b"{not json",
    b"<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> other\n",
    b'["a.csv"]',
    b'{"a.csv": "0123456789abcdef"}',
    b'{"a.csv": {"written": "2024-01-01T00:00:00+00:00"}}',
], ids=["not-json", "conflict", "list", "flat", "no-fingerprint"])
def test_an_unusable_provenance_file_is_moved_aside_and_the_result_written(tmp_path, content):
    (tmp_path / report.PROVENANCE).write_bytes(content)
    with pytest.warns(CacheWarning, match=r"provenance\.json: unusable.*provenance\.json\.bak"):
        report.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    assert pd.read_csv(tmp_path / "a.csv")["a"].tolist() == [1]
    assert (tmp_path / "provenance.json.bak").read_bytes() == content
    assert list(_records(tmp_path)) == ["a.csv"]
    with warnings.catch_warnings():  # once replaced, no more warnings
        warnings.simplefilter("error")
        report.write_csv(pd.DataFrame({"b": [1]}), tmp_path / "b.csv")
    assert sorted(_records(tmp_path)) == ["a.csv", "b.csv"]


def test_an_unwritable_provenance_file_warns_and_keeps_the_result(tmp_path, monkeypatch):
    def refuse(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(provenance, "atomic_write_text", refuse)
    with pytest.warns(CacheWarning, match="could not be written.*No space left.*a.csv was"):
        report.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
    assert pd.read_csv(tmp_path / "a.csv")["a"].tolist() == [1]
    assert not (tmp_path / report.PROVENANCE).exists()


def _folder(tmp_path):
    for name in ("same.csv", "older.csv", "unrecorded.csv"):
        (tmp_path / name).write_text("a\n1\n")
    (tmp_path / report.PROVENANCE).write_text(json.dumps({
        "same.csv": {"code_fingerprint": "aaaa", "written": "2024-01-01T00:00:00+00:00"},
        "older.csv": {"code_fingerprint": "bbbb", "written": "2024-01-01T00:00:00+00:00"},
        "deleted.csv": {"code_fingerprint": "bbbb", "written": "2024-01-01T00:00:00+00:00"},
    }))
    return tmp_path


def test_files_from_other_code(tmp_path):
    folder = _folder(tmp_path)
    assert report.files_from_other_code(folder, "aaaa") \
        == {"older.csv": "bbbb", "unrecorded.csv": None}
    assert report.files_from_other_code(folder, "bbbb") \
        == {"same.csv": "aaaa", "unrecorded.csv": None}


def test_the_end_of_run_line_names_files_other_code_made(tmp_path):
    folder = _folder(tmp_path)
    line = reproduce.other_code_line(folder, "aaaa")
    assert "2 file(s)" in line and "not made by this code (aaaa)" in line
    assert "older.csv (bbbb), unrecorded.csv (no record)" in line
    (folder / "older.csv").unlink()
    (folder / "unrecorded.csv").unlink()
    assert "every table" in reproduce.other_code_line(folder, "aaaa")
    (folder / report.PROVENANCE).write_text("[]")
    assert "provenance.json is unreadable" in reproduce.other_code_line(folder, "aaaa")
