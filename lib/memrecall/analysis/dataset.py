"""The numbers of notebook 01 (the data): IdioMem's lengths and flags, and split targets.

Every function takes IdioMem as :func:`memrecall.load_idiomem` returns it (``idiom``,
``source`` and the four :data:`~memrecall.data.idiomem.IDIOMEM_FLAGS`), or a sample of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import probes
from ..data.idiomem import IDIOMEM_FLAGS

__all__ = ["flag_combinations", "flag_counts", "flag_shares_by_source", "hard_to_guess_holds",
           "length_by_source", "length_counts", "length_shares", "length_summary",
           "multi_token_row", "word_counts"]


def word_counts(texts: pd.Series) -> pd.Series:
    """Words (whitespace-separated) of each text."""
    return texts.str.split().str.len()


def length_by_source(idioms: pd.DataFrame) -> pd.DataFrame:
    """Idiom length in words per source: ``count, mean, min, max``, largest source first.

    Args:
        idioms: IdioMem (``idiom``, ``source``).

    Returns:
        One row per source (index ``source``) plus a last row ``"all"`` for the whole set.

    """
    n_words = word_counts(idioms["idiom"])
    table = n_words.groupby(idioms["source"]).agg(["count", "mean", "min", "max"])
    table = table.sort_values("count", ascending=False)
    table.loc["all"] = [len(idioms), n_words.mean(), n_words.min(), n_words.max()]
    return table


def length_counts(idioms: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """Idioms of each length (words) per source, every length from the shortest to the longest.

    Args:
        idioms: IdioMem (``idiom``, ``source``).
        sources: the column order (e.g. ``length_by_source(idioms).index.drop("all")``).

    Returns:
        Counts indexed by ``n_words``, one column per source (0 where none).

    """
    n_words = word_counts(idioms["idiom"]).rename("n_words")
    return (pd.crosstab(n_words, idioms["source"])
            .reindex(range(n_words.min(), n_words.max() + 1), fill_value=0)
            .reindex(columns=list(sources)))


def hard_to_guess_holds(idioms: pd.DataFrame) -> int:
    """On how many rows ``hard_to_guess == not prompt_comp_ind and not similarity_ind``."""
    identity = idioms["hard_to_guess"] == ~(idioms["prompt_comp_ind"] | idioms["similarity_ind"])
    return int(identity.sum())


def flag_counts(idioms: pd.DataFrame, flags: Sequence[str] = IDIOMEM_FLAGS) -> pd.DataFrame:
    """How many idioms carry each flag: ``true`` (count) and ``true_pct``, one row per flag."""
    flags = list(flags)
    return pd.DataFrame({"true": idioms[flags].sum(), "true_pct": 100 * idioms[flags].mean()})


def flag_combinations(idioms: pd.DataFrame,
                      flags: Sequence[str] = IDIOMEM_FLAGS) -> pd.DataFrame:
    """Every combination of the flags that occurs: the flags, ``idioms`` and ``pct`` (1 decimal).

    Most frequent combination first.
    """
    combos = idioms.value_counts(list(flags)).rename("idioms").reset_index()
    combos["pct"] = (100 * combos["idioms"] / len(idioms)).round(1)
    return combos


def flag_shares_by_source(idioms: pd.DataFrame, sources: Sequence[str],
                          flags: Sequence[str] = IDIOMEM_FLAGS) -> pd.DataFrame:
    """Percentage of idioms with each flag set, one row per source (in ``sources`` order)."""
    return (100 * idioms.groupby("source")[list(flags)].mean()).reindex(sources)


def _lengths_long(lengths: Mapping[str, pd.Series]) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"set": name, "n_words": n_words})
                      for name, n_words in lengths.items()])


def length_shares(lengths: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Share (%) of each set's texts per length, every length from the shortest to the longest.

    Args:
        lengths: set name -> word count of each of its texts.

    Returns:
        Percentages indexed by ``n_words``, one column per set in ``lengths`` order (0 where
        none).

    """
    texts = _lengths_long(lengths)
    shares = 100 * pd.crosstab(texts["n_words"], texts["set"], normalize="columns")
    shares = shares[list(lengths)]
    return shares.reindex(range(texts["n_words"].min(), texts["n_words"].max() + 1),
                          fill_value=0)


def length_summary(lengths: Mapping[str, pd.Series]) -> pd.DataFrame:
    """``describe()`` of each set's word counts (count, mean, std, quartiles), sets sorted."""
    return _lengths_long(lengths).groupby("set")["n_words"].describe()


def multi_token_row(name: str, lm: Any, idioms: pd.DataFrame, wiki: pd.DataFrame,
                    facts: pd.DataFrame) -> dict[str, Any]:
    """How often one model's tokenizer splits the target word, for idioms and both controls.

    Args:
        name: the model's name.
        lm: a loaded :class:`memrecall.models.LM` (only its tokenizer and vocabulary size are
            used).
        idioms: IdioMem (``idiom``).
        wiki: the Wikipedia control (``text``).
        facts: the facts set (``text``; the last word is counted).

    Returns:
        ``model, tokenizer, vocab``, ``idioms: multi-token %``, ``idioms: max pieces``,
        ``wikipedia: multi-token %`` and ``facts (last word): multi-token %``.

    """
    pieces = probes.target_token_counts(probes.make_probes(idioms["idiom"], lm), lm.tokenizer)
    return {
        "model": name, "tokenizer": type(lm.tokenizer).__name__, "vocab": lm.vocab_size,
        "idioms: multi-token %": 100 * probes.multi_token_fraction(idioms["idiom"], lm.tokenizer),
        "idioms: max pieces": int(pieces.max()),
        "wikipedia: multi-token %": 100 * probes.multi_token_fraction(wiki["text"], lm.tokenizer),
        "facts (last word): multi-token %": 100 * probes.multi_token_fraction(facts["text"],
                                                                              lm.tokenizer),
    }
