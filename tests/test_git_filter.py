"""Source notebooks stay output-free: explore one, save it in JupyterLab, `git status` is clean.

Drives the Makefile's own `git-filter` target (what `make env` runs) in a throw-away repository
holding copies of the real Makefile, .gitattributes and notebooks, and saves through the Jupyter
server's contents manager with the pre-save hook that `make lab` sets (memrecall.jupyter.lab).
"""

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_server.services.contents.filemanager import FileContentsManager
from nbclient import NotebookClient
from traitlets.config import Config

from memrecall.jupyter import contents, lab, serve

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
ROOT = Path(__file__).resolve().parents[1]
HOOK = "memrecall.jupyter.lab.save_hook"
MANAGER = "memrecall.jupyter.contents.LabContentsManager"


def test_make_lab_saves_through_the_hook():
    assert "-m memrecall.jupyter.serve" in (ROOT / "Makefile").read_text()
    command = serve.lab_command(ROOT, 8888, "t")
    assert f"--ContentsManager.pre_save_hook={HOOK}" in command
    assert f"--ServerApp.contents_manager_class={MANAGER}" in command
VENV = Path(sys.prefix)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def explore_notebook() -> nbformat.NotebookNode:
    """A small exploring notebook, unexecuted: a parameters cell, a widget, an HTML output."""
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A notebook to explore"),
        nbformat.v4.new_code_cell("interactive = True", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import ipywidgets\nprint('hello')\n"
                                  "ipywidgets.IntSlider(value=3)"),
        nbformat.v4.new_code_cell("from IPython.display import HTML\nHTML('<b>bold</b>')"),
    ])
    notebook.metadata["kernelspec"] = KERNELSPEC
    return notebook


def make_repo(repo: Path, notebooks: list[Path]) -> Path:
    """A git repository with ``notebooks`` and 00_explore committed through the filter."""
    (repo / "notebooks" / "rendered" / "offline").mkdir(parents=True)
    for name in ("Makefile", ".gitattributes", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for notebook in notebooks:
        shutil.copy(notebook, repo / "notebooks" / notebook.name)
    nbformat.write(explore_notebook(), repo / "notebooks" / "00_explore.ipynb")
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.org")
    git(repo, "config", "user.name", "test")
    made = subprocess.run(["make", "--no-print-directory", "git-filter", f"BIN={VENV}/bin"],
                          cwd=repo, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "filter installed" in made.stdout
    assert (repo / ".gitattributes").read_text() == (ROOT / ".gitattributes").read_text()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "notebooks")
    return repo


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", [])


def test_filter_installs_once_and_keeps_committed_notebooks_as_they_are(tmp_path):
    repo = make_repo(tmp_path / "repo", sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")))
    assert "--keep-id" in git(repo, "config", "filter.nbstripout.clean")
    again = subprocess.run(["make", "--no-print-directory", "git-filter", f"BIN={VENV}/bin"],
                           cwd=repo, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == ""  # already there: nothing to do
    for notebook in ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"):  # the filter changes none
        committed = git(repo, "show", f"HEAD:notebooks/{notebook.name}")
        assert committed == notebook.read_text(), f"{notebook.name} is not stored as it is"


@pytest.fixture(scope="module")
def executed():
    """The exploring notebook as a JupyterLab session holds it: outputs, widget state, kernel."""
    notebook = explore_notebook()
    NotebookClient(notebook, kernel_name="python3", store_widget_state=True).execute()
    assert notebook.metadata["language_info"]["version"]  # what a kernel adds
    assert notebook.metadata["widgets"]  # the widget state JupyterLab saves
    assert any(cell.get("outputs") for cell in notebook.cells)
    return notebook


def save_in_jupyterlab(folder: Path, name: str, notebook) -> None:
    """Save as JupyterLab does: its server's contents manager, with `make lab`'s hook."""
    hook = Config({"ContentsManager": {"pre_save_hook": HOOK}})  # as on the command line
    manager = FileContentsManager(root_dir=str(folder), config=hook)
    manager.save({"type": "notebook", "format": "json", "content": notebook}, name)


def test_explore_and_save_in_jupyterlab_leaves_git_status_clean(repo, executed):
    source = repo / "notebooks"
    with_ids = nbformat.read(source / "00_explore.ipynb", as_version=4)  # same cell ids
    for cell, ran in zip(with_ids.cells, executed.cells, strict=True):
        cell.update({k: v for k, v in ran.items() if k in ("outputs", "execution_count")})
    with_ids.metadata.update(executed.metadata)
    save_in_jupyterlab(source, "00_explore.ipynb", with_ids)
    save_in_jupyterlab(source / "rendered" / "offline", "00_explore.ipynb", with_ids)

    assert git(repo, "status", "--porcelain") == "?? notebooks/rendered/\n"  # source unchanged
    git(repo, "add", "-A")  # rendered copies keep their outputs
    rendered = git(repo, "show", ":notebooks/rendered/offline/00_explore.ipynb")
    assert '"output_type"' in rendered and "hello" in rendered


def test_the_filter_alone_cleans_commits_but_not_git_status(repo, executed):
    """Saved with outputs (no hook): git stores it clean, yet `status` flags it (the file size
    changed): the reason `make lab` saves through the filter."""
    path = repo / "notebooks" / "00_explore.ipynb"
    with_ids = nbformat.read(path, as_version=4)
    for cell, ran in zip(with_ids.cells, executed.cells, strict=True):
        if cell.cell_type == "code":
            cell["outputs"] = ran["outputs"]
    nbformat.write(with_ids, path)
    status = git(repo, "status", "--porcelain", "--", "notebooks")
    assert status == " M notebooks/00_explore.ipynb\n"
    assert git(repo, "diff", "--no-textconv") == ""  # no change in what git stores
    git(repo, "add", "-A")
    assert '"output_type"' not in git(repo, "show", ":notebooks/00_explore.ipynb")


def test_hook_leaves_notebooks_without_a_filter_alone(tmp_path, executed):
    save_in_jupyterlab(tmp_path, "free.ipynb", executed)  # not in a git checkout
    assert "hello" in (tmp_path / "free.ipynb").read_text()
    assert lab.clean_filter(tmp_path / "free.ipynb") is None


def with_outputs(path: Path, executed) -> nbformat.NotebookNode:
    """The notebook at ``path`` (its cell ids) holding the outputs of ``executed``."""
    notebook = nbformat.read(path, as_version=4)
    for cell, ran in zip(notebook.cells, executed.cells, strict=True):
        cell.update({k: v for k, v in ran.items() if k in ("outputs", "execution_count")})
    notebook.metadata.update(executed.metadata)
    return notebook


def test_saving_keeps_an_executed_copy_that_git_ignores(repo, executed):
    source = repo / "notebooks" / "00_explore.ipynb"
    copy = repo / "notebooks" / "rendered" / "interactive" / "00_explore.ipynb"
    save_in_jupyterlab(source.parent, source.name, nbformat.read(source, as_version=4))
    assert not copy.exists()  # nothing run, nothing to keep
    save_in_jupyterlab(source.parent, source.name, with_outputs(source, executed))
    assert lab.executed_copy(source) == copy
    kept = nbformat.read(copy, as_version=4)
    assert "hello" in copy.read_text() and kept.metadata["widgets"]  # outputs, widget state
    assert [c.id for c in kept.cells] == [c.id for c in nbformat.read(source, 4).cells]
    assert '"output_type"' not in source.read_text()  # the source itself stays clean
    assert git(repo, "status", "--porcelain") == ""  # nothing changed that git would store
    assert git(repo, "check-ignore", str(copy)).strip() == str(copy)


def test_a_copy_that_cannot_be_written_keeps_no_output_in_the_source(repo, executed):
    source = repo / "notebooks" / "00_explore.ipynb"
    (repo / "notebooks" / "rendered" / "interactive").write_text("a file, not a folder")
    save_in_jupyterlab(source.parent, source.name, with_outputs(source, executed))
    assert '"output_type"' not in source.read_text()
    assert git(repo, "status", "--porcelain", "--", str(source)) == ""  # the error is logged


def test_a_source_notebook_opens_as_the_kernel_will_see_it(repo, executed):
    """Lab writes the kernel's language_info on open (marking it modified) unless it is there."""
    hook = Config({"ContentsManager": {"pre_save_hook": HOOK}})
    manager = contents.LabContentsManager(root_dir=str(repo / "notebooks"), config=hook)
    assert "language_info" not in nbformat.read(repo / "notebooks" / "00_explore.ipynb", 4).metadata
    served = asyncio.run(manager.get("00_explore.ipynb"))
    assert served["content"]["metadata"]["language_info"] == executed.metadata["language_info"]
    asyncio.run(manager.save({"type": "notebook", "format": "json",
                              "content": served["content"]}, "00_explore.ipynb"))
    assert git(repo, "status", "--porcelain") == ""  # dropped again on save
