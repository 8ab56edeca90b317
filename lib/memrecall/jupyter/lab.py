"""JupyterLab saves: source notebooks as git stores them, their outputs in an executed copy.

``.gitattributes`` sends ``notebooks/*.ipynb`` through the ``nbstripout`` clean filter (``make
env`` installs it), so commits never carry outputs. A filter alone leaves ``git status`` showing a
notebook saved with outputs as modified (git compares file sizes before it runs a filter), so
``make lab`` also sets :func:`store_as_git_does` as JupyterLab's pre-save hook: a notebook that
has a clean filter is written through that same filter. What is on disk is then what git stores,
and exploring a notebook, saving it and closing it leaves ``git status`` clean. The open notebook
keeps its outputs until it is reloaded; rendered copies (no filter) are saved as they are.

So that a session's outputs survive a reload, :func:`keep_executed_copy` first writes the
notebook as the session holds it (outputs, widget state) to
``notebooks/rendered/interactive/<name>.ipynb`` (git-ignored) on every save of a source notebook
that has outputs (Ctrl+S, or Lab's autosave): open that copy to see them again.
:func:`save_hook` does both; ``make lab`` (:mod:`memrecall.jupyter.serve`) sets it::

    jupyter lab --ContentsManager.pre_save_hook=memrecall.jupyter.lab.save_hook
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

from .._io import atomic_write_text

__all__ = ["EXECUTED_COPIES", "clean_filter", "executed_copy", "keep_executed_copy", "save_hook",
           "store_as_git_does"]

EXECUTED_COPIES = Path("rendered", "interactive")
"""Where the executed copy of a source notebook goes, relative to the notebook's folder
(``notebooks/rendered/interactive/``, beside ``make reproduce``'s ``rendered/<profile>/``)."""


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                              encoding="utf-8", timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def clean_filter(path: str | Path) -> str | None:
    """The shell command of the git clean filter that applies to ``path``, or None.

    None when ``path`` is outside a git checkout, has no ``filter`` attribute, or its filter
    is not installed (``make env`` installs ``nbstripout``).
    """
    path = Path(path).absolute()
    attribute = _git(path.parent, "check-attr", "filter", "--", path.name)
    name = attribute.rsplit(": ", 1)[-1] if attribute else "unspecified"
    if name in ("unspecified", "unset", "set"):
        return None
    return _git(path.parent, "config", f"filter.{name}.clean") or None


def store_as_git_does(model: dict, path: str, contents_manager: Any, **_: Any) -> None:
    """Jupyter pre-save hook: a notebook with a git clean filter is saved through it.

    Args:
        model: the contents model being saved; its ``content`` is replaced in place.
        path: the API path, relative to ``contents_manager.root_dir``.
        contents_manager: the Jupyter server's contents manager.

    Raises:
        subprocess.CalledProcessError: the filter failed (the save fails and says so, rather
            than write outputs into a source notebook).
    """
    if model.get("type") != "notebook" or not model.get("content"):
        return
    import nbformat

    os_path = Path(contents_manager.root_dir, path)
    command = clean_filter(os_path)
    if command is None:
        return
    text = nbformat.writes(nbformat.from_dict(model["content"]))
    cleaned = subprocess.run(command, shell=True, input=text, capture_output=True, text=True,
                             encoding="utf-8", cwd=os_path.parent, check=True,
                             timeout=120).stdout
    model["content"] = nbformat.reads(cleaned, as_version=nbformat.NO_CONVERT)


def executed_copy(path: str | Path) -> Path:
    """Where the executed copy of the source notebook at ``path`` is kept."""
    path = Path(path)
    return path.parent / EXECUTED_COPIES / path.name


def has_outputs(content: dict) -> bool:
    """Whether a notebook's code cells hold any output or execution count (it was run)."""
    return any(cell.get("outputs") or cell.get("execution_count") is not None
               for cell in content.get("cells", []) if cell.get("cell_type") == "code")


def keep_executed_copy(model: dict, path: str, contents_manager: Any, **_: Any) -> Path | None:
    """Jupyter pre-save hook: keep a source notebook's outputs in :func:`executed_copy`.

    Only for a notebook with a git clean filter (a source notebook, whose outputs the filter
    drops) that was run; the copy is the notebook as saved, outputs and widget state included,
    signed as the server signs what it saves (so it opens trusted when the session was), and
    written whole or not at all. ``model`` is left unchanged.

    Returns:
        the copy's path, or None when nothing was kept.
    """
    if model.get("type") != "notebook" or not model.get("content"):
        return None
    if not has_outputs(model["content"]):
        return None
    os_path = Path(contents_manager.root_dir, path)
    if clean_filter(os_path) is None:
        return None
    import nbformat

    notebook = nbformat.from_dict(copy.deepcopy(model["content"]))
    target = executed_copy(os_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(contents_manager, "check_and_sign"):
        contents_manager.check_and_sign(notebook, str(executed_copy(path)))
    atomic_write_text(target, nbformat.writes(notebook))
    return target


def save_hook(model: dict, path: str, contents_manager: Any, **kwargs: Any) -> None:
    """``make lab``'s pre-save hook: :func:`keep_executed_copy`, then :func:`store_as_git_does`.

    A copy that cannot be written never lets outputs into the source: the notebook is still
    saved through the filter, and the error (which the server logs) is raised after that.
    """
    try:
        keep_executed_copy(model, path, contents_manager, **kwargs)
    finally:
        store_as_git_does(model, path, contents_manager, **kwargs)
