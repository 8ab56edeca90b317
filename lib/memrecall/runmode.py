"""How a run shows progress: a widget in JupyterLab, plain text in batch runs.

``make reproduce`` sets ``$MEMRECALL_PLAIN_PROGRESS`` (and passes ``interactive=False`` to every
notebook), so papermill stores readable text, not widget state, in the rendered notebooks.
"""

from __future__ import annotations

import os

__all__ = ["PLAIN_ENV", "plain_progress", "progress_bar"]

PLAIN_ENV = "MEMRECALL_PLAIN_PROGRESS"


def plain_progress() -> bool:
    """Whether progress is shown as plain text (``$MEMRECALL_PLAIN_PROGRESS`` is set)."""
    return bool(os.environ.get(PLAIN_ENV))


def progress_bar(**kwargs):
    """A tqdm bar: a widget in JupyterLab, plain text when ``$MEMRECALL_PLAIN_PROGRESS`` is set.

    ``make reproduce`` sets it, so papermill stores readable text (not widget state) in the
    rendered notebooks and streams the same lines to the terminal.
    """
    if plain_progress():
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(**kwargs)
