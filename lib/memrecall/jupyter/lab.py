"""JupyterLab's side of keeping source notebooks clean: save them as git stores them.

``.gitattributes`` sends ``notebooks/*.ipynb`` through the ``nbstripout`` clean filter (``make
env`` installs it), so commits never carry outputs. A filter alone leaves ``git status`` showing a
notebook saved with outputs as modified (git compares file sizes before it runs a filter), so
``make lab`` also sets :func:`store_as_git_does` as JupyterLab's pre-save hook: a notebook that
has a clean filter is written through that same filter. What is on disk is then what git stores,
and exploring a notebook, saving it and closing it leaves ``git status`` clean. The open notebook
keeps its outputs until it is reloaded; rendered copies (no filter) are saved as they are.

Usage (what ``make lab`` passes)::

    jupyter lab --ContentsManager.pre_save_hook=memrecall.jupyter.lab.store_as_git_does
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

__all__ = ["clean_filter", "store_as_git_does"]


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
