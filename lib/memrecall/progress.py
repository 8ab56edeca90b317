"""Progress bars that read well in a terminal, in JupyterLab and in rendered notebooks."""

from __future__ import annotations

import os

PLAIN_ENV = "MEMRECALL_PLAIN_PROGRESS"


def progress_bar(**kwargs):
    """A tqdm bar: a widget in JupyterLab, plain text when ``$MEMRECALL_PLAIN_PROGRESS`` is set.

    ``make reproduce`` sets it, so papermill stores readable text (not widget state) in the
    rendered notebooks and streams the same lines to the terminal.
    """
    if os.environ.get(PLAIN_ENV):
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(**kwargs)
