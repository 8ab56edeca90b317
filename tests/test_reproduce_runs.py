"""Reliability of `make reproduce` runs: where a run writes, what it records, what a kill leaves.

Subsets of models write to their own folders and never rewrite the profile's tables; the record
of the code and models (fingerprint.json) is written only by a run that finished; SIGTERM and
SIGKILL leave nothing behind for long; bad names and unwritable folders fail in seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memrecall import pipeline, reproduce
from memrecall._io import exclusive_lock, repo_root
from memrecall.models import profile_models

LIB = str(repo_root() / "lib")


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """reproduce pointed at ``tmp_path`` with two fake notebooks that write a table each.

    Returns the list that records each notebook call's parameters; a notebook named in
    ``fail`` (a set, in the list's ``fail`` attribute) raises NotebookFailed.
    """
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    monkeypatch.setattr(reproduce, "NOTEBOOKS", tmp_path / "notebooks")
    books = [tmp_path / "notebooks" / f"0{i}_step.ipynb" for i in (1, 2)]
    monkeypatch.setattr(reproduce, "numbered_notebooks", lambda: books)
    monkeypatch.setattr(reproduce, "unavailable_hub_models", lambda models: [])

    class Calls(list):
        fail: set = set()

    calls = Calls()

    def run_notebook(notebook, output, parameters):
        calls.append(parameters)
        results = Path(parameters.get("results_dir", tmp_path / "results" / parameters["profile"]))
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{notebook.stem}.csv").write_text(f"model\n{parameters['models']}\n")
        if notebook.name in calls.fail:
            raise reproduce.NotebookFailed(f"{notebook.name}: cell 3 raised ValueError", None)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")

    monkeypatch.setattr(reproduce, "run_notebook", run_notebook)
    return calls


# --------------------------------------------------------------------------- 1. subsets


def test_a_subset_of_models_gets_its_own_folders():
    offline = profile_models("offline")
    assert reproduce.output_name("offline") == "offline"
    assert reproduce.output_name("offline", None, offline) == "offline"
    assert reproduce.output_name("offline", None, offline[::-1]) == "offline"  # same set
    assert reproduce.output_name("offline", None, ["smollm2-135m"]) == "offline-smollm2-135m"
    assert (reproduce.output_name("offline", "bfloat16", ["smollm2-135m", "gemma-3-270m"])
            == "offline-bfloat16-smollm2-135m+gemma-3-270m")
    assert reproduce.output_name("paper", None, ["EleutherAI/pythia-160m"]) == \
        "paper-EleutherAI-pythia-160m"
    many = reproduce.output_name("paper", None, [f"org/model-number-{i}" for i in range(20)])
    assert len(many) <= 100 and reproduce.SAFE_NAME.fullmatch(many)


def test_a_subset_run_never_rewrites_the_profiles_tables(fake_repo, tmp_path):
    profile_dir = tmp_path / "results" / "offline"
    profile_dir.mkdir(parents=True)
    tables = {"01_step.csv": "model\ngemma-3-270m,smollm2-135m,qwen2.5-coder-0.5b\n",
              "fingerprint.json": '{"models": ["gemma-3-270m"]}\n'}
    for file, text in tables.items():
        (profile_dir / file).write_text(text)

    assert reproduce.main(["--profile", "offline", "--models", "smollm2-135m"]) == 0
    assert {f: (profile_dir / f).read_text() for f in tables} == tables  # untouched
    subset = tmp_path / "results" / "offline-smollm2-135m"
    assert fake_repo[0]["results_dir"] == str(subset)
    assert fake_repo[0]["figures_dir"] == str(tmp_path / "figures" / "offline-smollm2-135m")
    assert (subset / "01_step.csv").read_text() == "model\nsmollm2-135m\n"
    record = json.loads((subset / "fingerprint.json").read_text())
    assert record["models"] == ["smollm2-135m"] and record["profile"] == "offline"
    assert (tmp_path / "notebooks" / "rendered" / "offline-smollm2-135m" / "02_step.ipynb").exists()


def test_fingerprint_json_is_written_only_by_a_run_that_finished(fake_repo, tmp_path, capsys):
    results = tmp_path / "results" / "smoke"
    results.mkdir(parents=True)
    previous = '{"code_fingerprint": "old", "models": ["tiny-gpt2"]}\n'
    (results / "fingerprint.json").write_text(previous)
    fake_repo.fail = {"02_step.ipynb"}
    assert reproduce.main(["--profile", "smoke"]) == 1
    assert (results / "fingerprint.json").read_text() == previous
    failed = json.loads((results / "fingerprint.incomplete.json").read_text())
    assert failed["models"] == profile_models("smoke")
    assert "fingerprint.incomplete.json" in capsys.readouterr().err

    fake_repo.fail = set()
    assert reproduce.main(["--profile", "smoke"]) == 0
    record = json.loads((results / "fingerprint.json").read_text())
    assert record["models"] == profile_models("smoke") and len(record["code_fingerprint"]) == 16
    assert not (results / "fingerprint.incomplete.json").exists()


def test_rendered_notebooks_record_code_and_models(tmp_path):
    import nbformat

    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    reproduce.stamp_notebook(path, "0123456789abcdef", ["tiny-gpt2", "tiny-bert"])
    record = nbformat.read(path, as_version=4).metadata["memrecall"]
    assert record == {"code_fingerprint": "0123456789abcdef", "models": ["tiny-gpt2", "tiny-bert"]}


# --------------------------------------------------------------------------- 2. kills


def test_what_a_killed_run_left_is_removed_at_the_next_start(fake_repo, tmp_path):
    rendered = tmp_path / "notebooks" / "rendered" / "smoke"
    cache = tmp_path / "results" / "smoke" / "cache"
    rendered.mkdir(parents=True)
    cache.mkdir(parents=True)
    partial = rendered / ".03_layerwise_projection.partial.ipynb"
    old_temp = cache / ".idioms.parquet.k2_x9abz.tmp"
    fresh_temp = cache / ".idioms.json.a1b2c3d4.tmp"  # maybe a live JupyterLab session's
    not_ours = [cache / "notes.tmp", cache / ".keep.tmp", rendered / "01_dataset.ipynb"]
    for path in [partial, old_temp, fresh_temp, *not_ours]:
        path.write_text("x")
    hour_ago = time.time() - 3600
    for path in [partial, old_temp, *not_ours]:
        os.utime(path, (hour_ago, hour_ago))

    with exclusive_lock(tmp_path / "results" / "smoke" / ".reproduce.lock", "smoke"):
        assert reproduce.main(["--profile", "smoke"]) == 3  # another run is live: nothing goes
    assert partial.exists() and old_temp.exists()

    assert reproduce.main(["--profile", "smoke"]) == 0
    assert not partial.exists() and not old_temp.exists()
    assert fresh_temp.exists() and all(path.exists() for path in not_ours)


SLEEPER = """\
import sys
from pathlib import Path
from memrecall import reproduce
root = Path(sys.argv[1])
reproduce.ROOT, reproduce.NOTEBOOKS = root, root / "notebooks"
reproduce.numbered_notebooks = lambda: [root / "notebooks" / "01_sleep.ipynb"]
sys.exit(reproduce.main(["--profile", "smoke", "--models", "tiny-gpt2"]))
"""


def test_sigterm_removes_the_partial_notebook_and_frees_the_lock(tmp_path):
    import nbformat

    (tmp_path / "notebooks").mkdir()
    kernel_pid = tmp_path / "notebooks" / "kernel.pid"
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os, time\nopen('kernel.pid', 'w').write(str(os.getpid()))"
                                  "\ntime.sleep(120)"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, tmp_path / "notebooks" / "01_sleep.ipynb")
    (tmp_path / "driver.py").write_text(SLEEPER)
    env = {**os.environ, "PYTHONPATH": LIB}
    run = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rendered = tmp_path / "notebooks" / "rendered" / "smoke-tiny-gpt2"
    try:
        deadline = time.monotonic() + 120
        while not kernel_pid.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        assert kernel_pid.exists(), run.communicate()
        assert list(rendered.glob(".*.partial.ipynb"))  # the cell is running
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 128 + signal.SIGTERM, err
    assert not list(rendered.glob(".*.partial.ipynb"))
    with exclusive_lock(tmp_path / "results" / "smoke-tiny-gpt2" / ".reproduce.lock", "free"):
        pass
    assert not (tmp_path / "results" / "smoke-tiny-gpt2" / "fingerprint.json").exists()
    pid = int(kernel_pid.read_text())
    for _ in range(50):  # the kernel is shut down with the run
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the kernel outlived the run")


# --------------------------------------------------------------------------- 3. clear errors


def test_an_unknown_model_fails_in_seconds_naming_the_registry(fake_repo, capsys):
    began = time.monotonic()
    assert reproduce.main(["--profile", "offline", "--models", "smollm2-135"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'smollm2-135'" in err and "smollm2-135m" in err and "gemma-3-270m" in err
    assert not fake_repo and time.monotonic() - began < 5
    reproduce.check_models(["EleutherAI/pythia-160m", "tiny-gpt2"])  # a hub id stays allowed


@pytest.mark.parametrize("models", [",", " , ,", ""])
def test_models_that_name_no_model_are_an_error(fake_repo, capsys, models):
    assert reproduce.main(["--profile", "smoke", "--models", models]) == 2
    assert "names no model" in capsys.readouterr().err and not fake_repo


@pytest.mark.parametrize("name", ["../../x", "a/b", ".", "..", ".hidden", "-x", "/tmp/x", ""])
def test_a_name_must_be_one_safe_folder_name(fake_repo, capsys, name):
    with pytest.raises(SystemExit):
        reproduce.main(["--profile", "smoke", f"--name={name}"])
    assert "is not a folder name" in capsys.readouterr().err and not fake_repo


def test_a_safe_name_is_used(fake_repo, tmp_path):
    assert reproduce.main(["--profile", "smoke", "--name", "trial_2.b"]) == 0
    assert fake_repo[0]["results_dir"] == str(tmp_path / "results" / "trial_2.b")


def test_an_unwritable_results_folder_is_one_clear_line(fake_repo, tmp_path, capsys):
    (tmp_path / "results").write_text("a file where the folder should be")
    assert reproduce.main(["--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results/smoke is not writable") and err.count("\n") == 1
    assert "Traceback" not in err and not fake_repo


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any mode")
def test_a_read_only_results_folder_is_one_clear_line(fake_repo, tmp_path, capsys):
    folder = tmp_path / "results" / "smoke"
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        assert reproduce.main(["--profile", "smoke"]) == 2
    finally:
        folder.chmod(0o755)
    assert capsys.readouterr().err.startswith("error: results/smoke is not writable")


@pytest.mark.parametrize("bad", [5, 1.5, ["tiny-gpt2", 3], {"tiny-gpt2"}])
def test_settings_take_models_as_text_a_list_or_none(tmp_path, bad):
    with pytest.raises(TypeError, match="models must be a comma-separated string, a list"):
        pipeline.settings("smoke", bad, root=tmp_path)
    with pytest.raises(ValueError, match="names no model"):
        pipeline.settings("smoke", ",", root=tmp_path)
    assert pipeline.settings("smoke", "tiny-gpt2, tiny-bert", root=tmp_path).models == \
        ("tiny-gpt2", "tiny-bert")

