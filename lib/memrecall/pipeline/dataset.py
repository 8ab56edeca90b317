"""Notebook 01's one model step: how each model's tokenizer splits the target words."""

from __future__ import annotations

import pandas as pd

from ..analysis.dataset import multi_token_row
from .runs import Settings

__all__ = ["multi_token_table"]


def multi_token_table(run: Settings, idioms: pd.DataFrame, wiki: pd.DataFrame,
                      facts: pd.DataFrame) -> pd.DataFrame:
    """:func:`memrecall.analysis.dataset.multi_token_row` for every model of ``run``.

    Each model is loaded (``run.load``) and released in turn; only its tokenizer is used.

    Returns:
        One row per model, indexed by ``model``.

    """
    rows = []
    for name in run.models:
        lm = run.load(name)
        rows.append(multi_token_row(name, lm, idioms, wiki, facts))
        del lm
    return pd.DataFrame(rows).set_index("model")
