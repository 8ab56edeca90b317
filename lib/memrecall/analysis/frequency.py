"""Table 4 of the paper: the prediction's first-layer rank against its word frequency.

The paper correlates (Pearson) the rank of the final prediction at the first layer with the
predicted word's general frequency in Wikipedia. We read frequencies offline from ``wordfreq``
(English, its "large" list: Wikipedia is one of its several sources, with subtitles, news, books
and web text, so this is general-English frequency, not Wikipedia alone).

From token to word: the predicted token is decoded on its own, stripped of whitespace and of
WordPiece's ``##`` continuation mark, and lowercased. A token that decodes to no letter at all
(punctuation, digits, a bare space marker) has no word and is left out of the correlation; a
sub-word piece counts as the word it spells (``"buck"`` for the first piece of ``"bucket"``), and
a word ``wordfreq`` does not know has frequency 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from wordfreq import word_frequency

__all__ = ["TABLE4_COLUMNS", "frequency_table", "rank_frequency_r", "token_word",
           "word_frequencies"]

TABLE4_COLUMNS = ["model", "subset", "n", "r", "p", "spearman_rho"]


def token_word(tokenizer: Any, token: int) -> str | None:
    """The word a single token spells: decoded, stripped, ``##`` removed, lowercased.

    Returns:
        The word, or None when it holds no letter (punctuation, digits, whitespace).
    """
    text = tokenizer.decode([int(token)]).strip().removeprefix("##").strip().lower()
    return text if any(ch.isalpha() for ch in text) else None


def word_frequencies(words: Sequence[str | None], lang: str = "en") -> np.ndarray:
    """``wordfreq`` frequency (fraction of all words) of each word; NaN for None."""
    return np.array([np.nan if w is None else word_frequency(w, lang, wordlist="large")
                     for w in words], dtype=np.float64)


def rank_frequency_r(first_ranks: np.ndarray, frequencies: np.ndarray) -> dict[str, float]:
    """Pearson r (and p) of first-layer rank against frequency, rows with a frequency only.

    Returns:
        ``n``, ``r``, ``p`` and ``spearman_rho`` (NaN when fewer than 3 rows or a constant column).
    """
    first_ranks = np.asarray(first_ranks, dtype=np.float64)
    frequencies = np.asarray(frequencies, dtype=np.float64)
    keep = ~np.isnan(frequencies)
    x, f = first_ranks[keep], frequencies[keep]
    out = {"n": int(keep.sum()), "r": np.nan, "p": np.nan, "spearman_rho": np.nan}
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(f) > 0:
        result = sps.pearsonr(x, f)
        out.update(r=float(result.statistic), p=float(result.pvalue),
                   spearman_rho=float(sps.spearmanr(x, f).statistic))
    return out


def frequency_table(model: str, res: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """Table 4 for one model: memorized idioms and all idioms.

    Args:
        model: the model's name.
        res: idiom results (``pred_token``, ``pred_rank``, ``is_memorized``).
        tokenizer: the model's tokenizer (to spell the predicted tokens).

    Returns:
        Two rows, ``subset`` ``memorized`` and ``all``: :data:`TABLE4_COLUMNS`.
    """
    words = [token_word(tokenizer, t) for t in res["pred_token"]]
    freqs = word_frequencies(words)
    first = np.array([np.asarray(r)[0] for r in res["pred_rank"]], dtype=np.float64)
    memorized = res["is_memorized"].to_numpy(dtype=bool)
    rows = [{"model": model, "subset": subset, **rank_frequency_r(first[mask], freqs[mask])}
            for subset, mask in (("memorized", memorized), ("all", np.ones_like(memorized)))]
    return pd.DataFrame(rows, columns=TABLE4_COLUMNS)
