"""``make lab``'s contents manager: a source notebook opens unmodified.

Source notebooks are stored without ``language_info`` (the clean filter drops it with the
outputs). JupyterLab writes the kernel's ``language_info`` into a notebook's metadata as soon as
its kernel starts, and any metadata change marks the notebook modified, so every notebook
opened as "modified" before anything was done. :class:`LabContentsManager` serves a notebook
that lacks it with the ``language_info`` this server's Python kernel reports (the same
interpreter ``make lab`` runs), so Lab's write changes nothing; on save the clean filter drops it
again (:func:`memrecall.jupyter.lab.store_as_git_does`) and git sees no change.
"""

from __future__ import annotations

import sys
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

__all__ = ["LabContentsManager", "kernel_language_info"]


def kernel_language_info() -> dict[str, Any]:
    """The ``language_info`` an IPython kernel on this interpreter reports (ipykernel's own)."""
    try:
        from ipykernel.ipkernel import IPythonKernel
    except ImportError:  # no kernel here: what ipykernel 6-7 reports
        return {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python",
                "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
                "pygments_lexer": "ipython3", "nbconvert_exporter": "python",
                "file_extension": ".py"}
    return dict(IPythonKernel.language_info)


class LabContentsManager(AsyncLargeFileManager):
    """Jupyter's file manager, serving notebooks with the kernel's ``language_info`` if absent."""

    async def get(self, path: str, content: bool = True, type: str | None = None,  # noqa: A002
                  format: str | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A002
        """The model at ``path``; a notebook without ``language_info`` gets the kernel's."""
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if content and model.get("type") == "notebook" and model.get("content") is not None:
            metadata = model["content"].setdefault("metadata", {})
            kernel = metadata.get("kernelspec", {}).get("language", "python")
            if "language_info" not in metadata and kernel == "python":
                metadata["language_info"] = kernel_language_info()
        return model
