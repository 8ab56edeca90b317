"""Every numbered notebook runs end to end in the smoke profile and produces its figures."""

import json
import re
from itertools import combinations
from pathlib import Path

import papermill
import pytest

from memrecall.report import files_from_other_code
from memrecall.reproduce import NOTEBOOKS, main, numbered_notebooks, run_notebook

NOTEBOOK_FILES = numbered_notebooks()
PARAMETERS = ["profile", "models", "device", "batch_size", "results_dir", "figures_dir",
              "interactive", "dtype", "quick"]
# A block of this many consecutive non-trivial code lines found in two notebooks is copied logic.
REPEATED_LINES = 6


def test_there_are_numbered_notebooks():
    assert [p.name[:2] for p in NOTEBOOK_FILES] == [f"{i:02d}" for i in
                                                    range(1, len(NOTEBOOK_FILES) + 1)]
    assert len(NOTEBOOK_FILES) >= 4


@pytest.mark.parametrize("notebook", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_source_notebook_is_clean(notebook):
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert list(papermill.inspect_notebook(str(notebook))) == PARAMETERS  # papermill parses all
    assert nb["cells"][0]["cell_type"] == "markdown"
    for cell in code:  # shared logic lives in memrecall, not in notebooks
        assert "\ndef " not in "\n" + "".join(cell["source"]), "a notebook defines a helper"


def code_lines(notebook: Path) -> list[str]:
    """The notebook's code, one stripped line each, without its parameters cell and without
    lines that are blank, comments, imports or closing brackets (shared by design)."""
    nb = json.loads(notebook.read_text())
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        for line in "".join(cell["source"]).splitlines():
            line = line.strip()
            if line and not re.match(r"#|import |from \S+ import |[\])}]+,?$", line):
                out.append(line)
    return out


def repeated_blocks(a: list[str], b: list[str], size: int = REPEATED_LINES) -> list[list[str]]:
    """Blocks of ``size`` consecutive lines of ``a`` that also occur, in a row, in ``b``."""
    windows = {tuple(b[i:i + size]) for i in range(len(b) - size + 1)}
    return [a[i:i + size] for i in range(len(a) - size + 1) if tuple(a[i:i + size]) in windows]


def test_repeated_block_detection():
    shared = [f"x{i} = f(x{i - 1})" for i in range(REPEATED_LINES)]
    assert repeated_blocks(["a = 1", *shared], [*shared, "b = 2"]) == [shared]
    assert repeated_blocks(shared[:-1], shared) == []


@pytest.mark.parametrize(("first", "second"), list(combinations(NOTEBOOK_FILES, 2)),
                         ids=lambda p: p.stem[:2])
def test_notebooks_share_no_block_of_code(first, second):
    blocks = repeated_blocks(code_lines(first), code_lines(second))
    assert not blocks, (f"{first.name} and {second.name} repeat a block of code (move it into "
                        "memrecall):\n" + "\n".join(blocks[0]))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(notebook, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMRECALL_PLAIN_PROGRESS", "1")
    figures, results = tmp_path / "figures", tmp_path / "results"
    output = tmp_path / notebook.name
    run_notebook(notebook, output, {"profile": "smoke", "results_dir": str(results),
                                    "figures_dir": str(figures), "interactive": False})
    assert output.is_file()
    pngs = sorted(p.stem for p in figures.glob(f"{notebook.name[:2]}_*.png"))
    pdfs = sorted(p.stem for p in figures.glob(f"{notebook.name[:2]}_*.pdf"))
    assert pngs and pngs == pdfs, "each figure is saved as PNG and PDF"
    executed = json.loads(output.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert files_from_other_code(results) == {}, "each table records the code that made it"


def write_notebook(path: Path, *code: str) -> Path:
    """A notebook at ``path``: a ``profile = 'smoke'`` parameters cell, then a cell per ``code``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        *(nbformat.v4.new_code_cell(source) for source in code),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_failing_cell_names_the_notebook_and_error(tmp_path):
    source = write_notebook(tmp_path / "99_broken.ipynb", "raise ValueError('the data is wrong')")
    output = tmp_path / "rendered" / "99_broken.ipynb"
    message = r"99_broken.ipynb: cell \d+ raised ValueError: the data"
    with pytest.raises(RuntimeError, match=message):
        run_notebook(source, output, {"profile": "smoke"})
    assert not output.exists()  # nothing half-written where readers look
    assert (tmp_path / "rendered" / "99_broken.failed.ipynb").is_file()


def test_reproduce_stops_at_once_without_the_hub(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr("memrecall.models.loading.HUB_HOST", "hub.invalid")
    ran = []
    monkeypatch.setattr("memrecall.reproduce.run_notebook", lambda *a: ran.append(a))
    assert main(["--profile", "paper"]) == 2
    assert not ran
    assert "PROFILE=offline" in capsys.readouterr().err


def test_notebooks_folder_is_the_repository_one():
    assert NOTEBOOKS == Path(__file__).resolve().parents[1] / "notebooks"


def test_reproduce_in_bfloat16_keeps_the_float32_outputs_apart(monkeypatch):
    ran = []
    monkeypatch.setattr("memrecall.reproduce.write_fingerprint",
                        lambda results, *args, **kwargs: ran.append(results))
    monkeypatch.setattr("memrecall.reproduce.commit_fingerprint", lambda results: None)
    monkeypatch.setattr("memrecall.reproduce.run_notebook",
                        lambda notebook, output, parameters: ran.append((output, parameters)))
    assert main(["--profile", "smoke", "--dtype", "bfloat16"]) == 0
    fingerprint_dir, (output, parameters) = ran[0], ran[1]
    assert fingerprint_dir.name == output.parent.name == "smoke-bfloat16"
    assert parameters["dtype"] == "bfloat16"
    assert Path(parameters["results_dir"]).name == Path(parameters["figures_dir"]).name \
        == "smoke-bfloat16"
    ran.clear()
    assert main(["--profile", "smoke"]) == 0  # float32: the profile's own folders
    assert ran[0].name == "smoke" and ran[1][1]["dtype"] is None
    assert "results_dir" not in ran[1][1]


@pytest.mark.slow
def test_notebook_03_offers_the_lenses_notebook_06_cached(tmp_path, data_dir, monkeypatch):
    """Interactive and quick: the explorer gets the fitted lenses in the cache, none fitted."""
    import memrecall as mr
    from memrecall import pipeline

    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMRECALL_PLAIN_PROGRESS", "1")
    parameters = {"profile": "smoke", "models": "tiny-gpt2", "results_dir": str(tmp_path / "r"),
                  "figures_dir": str(tmp_path / "f"), "interactive": True, "quick": True}
    source = next(p for p in NOTEBOOK_FILES if p.name.startswith("03_"))

    def lens_line(output: Path) -> str:
        run_notebook(source, output, parameters)
        text = "".join("".join(o.get("text", "")) for c in json.loads(output.read_text())["cells"]
                       for o in c.get("outputs", []))
        return re.search(r"fitted lenses in the cache: (.*)", text).group(1)

    assert lens_line(tmp_path / "before.ipynb") == "none (notebook 06)"
    assert not list((tmp_path / "r" / "cache").glob("*.safetensors"))  # 03 fits no lens
    run = pipeline.settings("smoke", "tiny-gpt2", results_dir=tmp_path / "r",
                            figures_dir=tmp_path / "f", quick=True)
    pipeline.fitted_lenses(mr.load("tiny-gpt2", device="cpu"), run)  # what notebook 06 caches
    assert lens_line(tmp_path / "after.ipynb") == "linear shortcut, tuned lens"
