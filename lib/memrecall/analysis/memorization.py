"""Who memorizes what: memorized shares by source and flag, the whole-word criterion, agreement.

The numbers of notebook 02 (the memorization split) and the memorized shares that notebooks 03
and 04 quote, from ``is_memorized`` columns of :func:`memrecall.project` results (no layers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import probes

__all__ = ["COUNT_SUBSETS", "memorization_by", "memorization_frame", "memorization_matrix",
           "memorization_overview", "memorized_by_n_models", "memorized_counts",
           "memorized_rates", "pairwise_agreement", "whole_word_summary"]

# Table 3 on the paper's terms: subset name -> IdioMem boolean column (None: every idiom). The
# paper counts over its 814 filtered idioms; of the released 852, the 717 ``hard_to_guess``
# ones are the closest to that set.
COUNT_SUBSETS = {"all": None, "hard_to_guess": "hard_to_guess"}


def memorization_frame(idiom_res: pd.DataFrame, tokenizer: Any,
                       continuation: pd.DataFrame | None = None) -> pd.DataFrame:
    """One model's per-idiom memorization split: its idiom results plus the decoded tokens.

    Args:
        idiom_res: :func:`memrecall.pipeline.idiom_results` output (``target_token``,
            ``pred_token``, ``is_memorized``, ``prompt``, ``target``...).
        tokenizer: the model's Hugging Face tokenizer.
        continuation: :func:`memrecall.forward.generate.whole_word_continuation` output
            (``continuation``, ``whole_word``, aligned with ``idiom_res``), or ``None`` for a
            masked LM (no continuation: ``None`` and ``pd.NA``).

    Returns:
        A copy of ``idiom_res`` with ``target_piece`` and ``pred_piece`` (the target's first
        sub-token and the greedy prediction, as text), ``n_target_tokens`` (sub-tokens of the
        target word), ``continuation`` and ``whole_word``.

    """
    res = idiom_res.copy()
    res["target_piece"] = [tokenizer.decode([t]) for t in res["target_token"]]
    res["pred_piece"] = [tokenizer.decode([t]) for t in res["pred_token"]]
    res["n_target_tokens"] = probes.target_token_counts(res, tokenizer)
    if continuation is None:
        res["continuation"], res["whole_word"] = None, pd.NA
    else:
        res["continuation"] = continuation["continuation"]
        res["whole_word"] = continuation["whole_word"]
    return res


def memorization_overview(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Memorized idioms per model, of all idioms and of the ``hard_to_guess`` ones.

    Args:
        results: model name -> idiom results with ``is_memorized`` and ``hard_to_guess``.

    Returns:
        One row per model (index ``model``): ``idioms``, ``memorized`` (count), ``memorized
        %``, ``hard_to_guess idioms`` and ``memorized % (hard_to_guess)``.

    """
    return pd.DataFrame([{
        "model": name, "idioms": len(res), "memorized": int(res["is_memorized"].sum()),
        "memorized %": 100 * res["is_memorized"].mean(),
        "hard_to_guess idioms": int(res["hard_to_guess"].sum()),
        "memorized % (hard_to_guess)": 100 * res.loc[res["hard_to_guess"], "is_memorized"].mean(),
    } for name, res in results.items()]).set_index("model")


def memorized_by_n_models(matrix: pd.DataFrame) -> pd.DataFrame:
    """How many idioms exactly N of the models memorize, for N = 0 .. number of models.

    Args:
        matrix: :func:`memorization_matrix` output (bool, one column per model).

    Returns:
        Indexed by ``memorized by N models``: ``idioms`` (count) and ``%`` (1 decimal).

    """
    n_models = matrix.sum(axis=1)
    table = (n_models.value_counts().reindex(range(matrix.shape[1] + 1), fill_value=0)
             .rename("idioms").rename_axis("memorized by N models").to_frame())
    table["%"] = (100 * table["idioms"] / len(matrix)).round(1)
    return table


def memorization_by(frame: pd.DataFrame, columns: Sequence[str] | str) -> pd.DataFrame:
    """Memorized count and percentage for each value of each column (source, flags...).

    Args:
        frame: rows with ``is_memorized`` and the ``columns`` (e.g. ``pipeline.idiom_results``).
        columns: one column name or several; each is grouped on separately.

    Returns:
        Long frame: ``column, value, n, n_memorized, memorized_pct``, values in sorted order
        (for a flag: ``False`` then ``True``).

    """
    if isinstance(columns, str):
        columns = [columns]
    rows = []
    for column in columns:
        for value, group in frame.groupby(column, sort=True)["is_memorized"]:
            n, k = len(group), int(group.sum())
            rows.append({"column": column, "value": value, "n": n, "n_memorized": k,
                         "memorized_pct": 100 * k / n})
    return pd.DataFrame(rows, columns=["column", "value", "n", "n_memorized", "memorized_pct"])


def memorized_rates(labelled: Mapping[str, pd.DataFrame],
                    sources: Sequence[str] = ("idioms", "facts")) -> pd.DataFrame:
    """Memorized count and share per model and source.

    Args:
        labelled: model name -> :func:`memrecall.analysis.label_groups` output (``source``,
            ``is_memorized``).
        sources: the sources to count, in order (absent ones are skipped).

    Returns:
        One row per model and source: ``model, source, n, memorized, memorized (%)``.

    """
    rows = []
    for name, frame in labelled.items():
        for source in sources:
            part = frame.loc[frame["source"] == source, "is_memorized"].astype(bool)
            if len(part):
                rows.append({"model": name, "source": source, "n": len(part),
                             "memorized": int(part.sum()),
                             "memorized (%)": 100 * float(part.mean())})
    return pd.DataFrame(rows, columns=["model", "source", "n", "memorized", "memorized (%)"])


def memorized_counts(model: str, idiom_res: pd.DataFrame) -> pd.DataFrame:
    """Table 3 on the paper's terms: memorized idioms of all idioms and of ``hard_to_guess``.

    Args:
        model: the model's name.
        idiom_res: idiom results with ``is_memorized`` (and ``hard_to_guess`` for that row).

    Returns:
        One row per subset present: ``model, subset, n, memorized, memorized_pct``.
    """
    rows = []
    for subset, column in COUNT_SUBSETS.items():
        if column is not None and column not in idiom_res:
            continue
        part = idiom_res if column is None else idiom_res[idiom_res[column].astype(bool)]
        memorized = int(part["is_memorized"].sum())
        rows.append({"model": model, "subset": subset, "n": len(part), "memorized": memorized,
                     "memorized_pct": 100 * memorized / len(part) if len(part) else np.nan})
    return pd.DataFrame(rows)


def whole_word_summary(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """How the first-sub-token criterion compares with the whole target word, per model.

    Args:
        results: model name -> idiom results with ``is_memorized``, ``n_target_tokens`` and
            ``whole_word`` (:func:`memrecall.forward.whole_word_continuation`); models
            whose ``whole_word`` is all missing (masked LMs) are skipped.

    Returns:
        One row per model (index ``model``): ``multi-token targets`` (count), ``share of idioms
        %``, among multi-token targets ``first piece %`` (first sub-token predicted),
        ``whole word %`` (greedy continuation is the word) and ``whole | first %`` (whole word
        among first-piece hits), and ``memorized % (whole-word criterion)``: idioms whose first
        piece is predicted and, for multi-token targets, whose whole word is.

    """
    rows = []
    for name, res in results.items():
        if res["whole_word"].isna().all():
            continue
        multi_rows = res["n_target_tokens"] > 1
        multi = res[multi_rows]
        hits = multi["whole_word"].astype(bool)
        whole = res["is_memorized"] & (~multi_rows | res["whole_word"].astype(bool))
        rows.append({
            "model": name, "multi-token targets": len(multi),
            "share of idioms %": 100 * len(multi) / len(res),
            "first piece %": 100 * multi["is_memorized"].mean() if len(multi) else np.nan,
            "whole word %": 100 * hits.mean() if len(multi) else np.nan,
            "whole | first %": (100 * hits[multi["is_memorized"]].mean()
                                if multi["is_memorized"].any() else np.nan),
            "memorized % (whole-word criterion)": 100 * whole.mean(),
        })
    columns = ["model", "multi-token targets", "share of idioms %", "first piece %",
               "whole word %", "whole | first %", "memorized % (whole-word criterion)"]
    return pd.DataFrame(rows, columns=columns).set_index("model")


def memorization_matrix(results: Mapping[str, pd.DataFrame], key: str = "text") -> pd.DataFrame:
    """``is_memorized`` of several models side by side, one row per text.

    Args:
        results: model name -> frame with ``key`` and ``is_memorized`` columns.
        key: the column that identifies an example across models.

    Returns:
        A bool frame indexed by ``key`` (texts all models share, in the first model's order),
        one column per model.

    """
    columns = {m: frame.drop_duplicates(key).set_index(key)["is_memorized"].astype(bool)
               for m, frame in results.items()}
    return pd.DataFrame(columns).dropna().astype(bool)


def pairwise_agreement(matrix: pd.DataFrame) -> pd.DataFrame:
    """Agreement of every pair of models on which examples are memorized.

    Args:
        matrix: :func:`memorization_matrix` output (bool, one column per model).

    Returns:
        One row per pair: ``model_a, model_b, n, both, only_a, only_b, neither``,
        ``agreement`` (fraction of examples with the same label), ``jaccard`` (``both /
        (both + only_a + only_b)``) and Cohen's ``kappa`` (agreement beyond chance; NaN when
        chance agreement is 1).

    """
    rows = []
    models = list(matrix.columns)
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            x, y = matrix[a].to_numpy(bool), matrix[b].to_numpy(bool)
            n = len(x)
            both, only_a = int((x & y).sum()), int((x & ~y).sum())
            only_b, neither = int((~x & y).sum()), int((~x & ~y).sum())
            observed = (both + neither) / n if n else float("nan")
            pa, pb = x.mean() if n else np.nan, y.mean() if n else np.nan
            chance = pa * pb + (1 - pa) * (1 - pb)
            kappa = (observed - chance) / (1 - chance) if n and chance < 1 else float("nan")
            union = both + only_a + only_b
            rows.append({"model_a": a, "model_b": b, "n": n, "both": both, "only_a": only_a,
                         "only_b": only_b, "neither": neither, "agreement": observed,
                         "jaccard": both / union if union else float("nan"),
                         "kappa": float(kappa)})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "n", "both", "only_a", "only_b",
                                       "neither", "agreement", "jaccard", "kappa"])
