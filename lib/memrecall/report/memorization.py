"""Notebook 02 for reading: the ``memorization_<model>.csv`` files and the computed conclusions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.idiomem import IDIOMEM_FLAGS
from .tables import write_csv

__all__ = ["MEMORIZATION_CSV_COLUMNS", "memorization_conclusions", "memorization_csv",
           "write_memorization_csv"]

# The columns of ``memorization_<model>.csv``, in order, as named in the file (``text`` of the
# idiom results is written as ``idiom``).
MEMORIZATION_CSV_COLUMNS = ("id", "idiom", "source", *IDIOMEM_FLAGS, "prompt", "target",
                            "target_piece", "pred_piece", "is_memorized", "n_target_tokens",
                            "continuation", "whole_word")


def memorization_csv(res: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``memorization_<model>.csv``: :data:`MEMORIZATION_CSV_COLUMNS` of ``res``.

    Args:
        res: :func:`memrecall.pipeline.memorization_results` output (``text`` is the idiom).

    Returns:
        A new frame, no per-layer arrays, ``text`` renamed ``idiom``.

    """
    columns = [("text" if c == "idiom" else c) for c in MEMORIZATION_CSV_COLUMNS]
    return res[columns].rename(columns={"text": "idiom"})


def write_memorization_csv(res: pd.DataFrame, path: str | Path) -> Path:
    """Write :func:`memorization_csv` of ``res`` to ``path`` (:func:`write_csv`)."""
    return write_csv(memorization_csv(res), path)


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.1f}%"


def _num(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.2f}"


def memorization_conclusions(overview: pd.DataFrame, by_source: pd.DataFrame,
                             by_flag: pd.DataFrame, whole_word: pd.DataFrame,
                             agreement: pd.DataFrame | None = None,
                             memorized_by: pd.DataFrame | None = None) -> str:
    """The closing text of notebook 02, computed from its tables (Markdown bullets).

    Args:
        overview: :func:`memrecall.analysis.memorization.memorization_overview` output.
        by_source: :func:`memrecall.analysis.memorization.memorization_by` on ``source``, with
            a ``model`` column.
        by_flag: the same on the flags.
        whole_word: :func:`memrecall.analysis.memorization.whole_word_summary` output.
        agreement: :func:`memrecall.analysis.memorization.pairwise_agreement` output, or
            ``None`` with one model.
        memorized_by: :func:`memrecall.analysis.memorization.memorized_by_n_models` output, or
            ``None``.

    Returns:
        One bullet per model and topic, then the agreement bullets; numbers only.

    """
    lines = []
    for name, row in overview.iterrows():
        lines.append(f"* **{name}**: memorizes {int(row['memorized'])} of "
                     f"{int(row['idioms'])} idioms ({_pct(row['memorized %'])}); of the "
                     f"{int(row['hard_to_guess idioms'])} "
                     f"`hard_to_guess` idioms, {_pct(row['memorized % (hard_to_guess)'])}.")
        sources = by_source[by_source["model"] == name].sort_values(
            "memorized_pct", ascending=False, kind="stable")
        if len(sources):
            lines.append("  By source: " + ", ".join(
                f"{r.value} {_pct(r.memorized_pct)} of {r.n}" for r in sources.itertuples())
                + ".")
        flags = by_flag[by_flag["model"] == name]
        if len(flags):
            lines.append("  By flag (memorized when the flag is True / False): " + "; ".join(
                f"`{column}` {_pct(rows.loc[rows['value'].astype(bool), 'memorized_pct'].max())} / "
                f"{_pct(rows.loc[~rows['value'].astype(bool), 'memorized_pct'].max())}"
                for column, rows in flags.groupby("column", sort=False)) + ".")
        if name in whole_word.index:
            ww = whole_word.loc[name]
            first_right = ("none has the first piece right" if pd.isna(ww["whole | first %"])
                           else "among those with the first piece right, greedy decoding gives "
                           f"the whole word in {_pct(ww['whole | first %'])}")
            lines.append(
                f"  Whole words: {int(ww['multi-token targets'])} targets span several "
                f"sub-tokens ({_pct(ww['share of idioms %'])} of idioms); {first_right}; "
                "memorized under the whole-word criterion: "
                f"{_pct(ww['memorized % (whole-word criterion)'])} (first-piece criterion "
                f"{_pct(row['memorized %'])}).")
        else:
            lines.append("  Whole words: not checked (masked LM, no greedy continuation).")
    if memorized_by is not None and len(memorized_by):
        n_models = int(memorized_by.index.max())
        total = int(memorized_by["idioms"].sum())
        lines.append(f"* **Agreement**: of {total} idioms, {memorized_by.loc[n_models, 'idioms']} "
                     f"are memorized by all {n_models} models and {memorized_by.loc[0, 'idioms']} "
                     "by none.")
    if agreement is not None:
        for r in agreement.itertuples():
            lines.append(f"  {r.model_a} and {r.model_b}: both {r.both}, only {r.model_a} "
                         f"{r.only_a}, only {r.model_b} {r.only_b}, neither {r.neither}; "
                         f"Jaccard {_num(r.jaccard)}, Cohen's kappa {_num(r.kappa)}.")
    return "\n".join(lines)
