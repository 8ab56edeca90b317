"""Statistics over the layer-wise projections of :func:`memrecall.project`.

Everything a notebook needs to turn per-example, per-layer arrays into the numbers and the
summaries behind the figures: group labels, the *promotion layer* (when the final prediction
reaches the top for good), the *confidence boost* after it, per-layer group means with confidence
intervals, and two-sample tests.

Conventions:

* Layer **indices** are 0-based, like the per-layer arrays (``promotion_layer == 0`` means the
  prediction was already top-1 after the first block). Summaries meant for plots carry a 1-based
  ``layer`` column (layer ``i + 1`` is the output of block ``i``), as the figures label them.
* Confidence intervals are **percentile bootstrap** intervals of the group mean, with a seeded
  generator (``seed=0``) so reruns give identical numbers: no normality assumption, which matters
  for skewed probabilities and heavy-tailed ranks.
* Ranks are summarised by the **geometric mean of (rank + 1), minus 1**: the arithmetic mean of
  ranks is driven by the few examples ranked in the thousands, while the geometric mean is what a
  log axis shows honestly. 0 still means "every example ranks the token first".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

GROUPS = ("memorized", "non-memorized", "wikipedia")
"""The three groups of the paper's main figure, in plotting order."""

FACT_GROUPS = ("facts: memorized", "facts: non-memorized")
"""Groups for the facts extension (memorized = the model predicts the object's first token)."""

SUMMARY_COLUMNS = ["group", "layer", "mean", "lo", "hi", "n", "statistic"]


# --------------------------------------------------------------------------- groups


def _memorization_groups(frame: pd.DataFrame, labels: tuple[str, str]) -> pd.DataFrame:
    if "is_memorized" not in frame.columns:
        raise ValueError("the frame needs an `is_memorized` column (project probes with targets)")
    out = frame.copy()
    memorized = out["is_memorized"].to_numpy(dtype=bool)
    out["group"] = np.where(memorized, labels[0], labels[1])
    return out


def label_groups(idiom_res: pd.DataFrame, wiki_res: pd.DataFrame | None = None,
                 facts_res: pd.DataFrame | None = None) -> pd.DataFrame:
    """Concatenate projection results with a ``group`` column.

    Args:
        idiom_res: :func:`memrecall.project` output for idioms; rows become ``"memorized"`` or
            ``"non-memorized"`` by ``is_memorized``.
        wiki_res: the same for Wikipedia sentences; every row is ``"wikipedia"`` whatever its
            ``is_memorized`` (kept as a column).
        facts_res: optional facts results: ``"facts: memorized"`` / ``"facts: non-memorized"``.

    Returns:
        One frame (fresh 0..n-1 index) with all input columns plus ``group`` and ``source``
        (``"idioms"``, ``"wikipedia"``, ``"facts"``).

    """
    parts = [_memorization_groups(idiom_res, GROUPS[:2]).assign(source="idioms")]
    if wiki_res is not None:
        parts.append(wiki_res.assign(group=GROUPS[2], source="wikipedia"))
    if facts_res is not None:
        parts.append(_memorization_groups(facts_res, FACT_GROUPS).assign(source="facts"))
    return pd.concat(parts, ignore_index=True)


def group_order(groups: Iterable[str]) -> list[str]:
    """Known groups first in :data:`GROUPS` / :data:`FACT_GROUPS` order, then others as met."""
    seen = list(dict.fromkeys(groups))
    known = [g for g in GROUPS + FACT_GROUPS if g in seen]
    return known + [g for g in seen if g not in known]


# --------------------------------------------------------------------------- per example


def stack(values: pd.Series | Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack a column of per-layer arrays: ``n`` arrays of length ``L`` -> ``(n, L)``."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return values
    rows = list(values)
    if not rows:
        raise ValueError("no rows to stack")
    return np.stack([np.asarray(r) for r in rows])


def promotion_layer(ranks: np.ndarray | pd.Series | Sequence[np.ndarray]) -> np.ndarray:
    """First layer from which the token stays at rank 0 through the last layer.

    Args:
        ranks: ``(n, n_layers)`` ranks of the final prediction (or a column of per-layer arrays).

    Returns:
        ``(n,)`` int 0-based layer indices; ``0`` means top-1 from the first block on.

    Raises:
        ValueError: a row is not at rank 0 in the last layer (true of every ``pred_rank``; for
            ``target_rank`` keep only memorized rows).

    """
    ranks = stack(ranks)
    top = ranks == 0
    if not top[:, -1].all():
        bad = np.flatnonzero(~top[:, -1])
        raise ValueError(f"rows {bad[:10].tolist()} are not at rank 0 in the last layer")
    # Index of the last layer where the rank is not 0, plus one; 0 if there is none.
    not_top_reversed = ~top[:, ::-1]
    has_miss = not_top_reversed.any(axis=1)
    last_miss = ranks.shape[1] - 1 - not_top_reversed.argmax(axis=1)
    return np.where(has_miss, last_miss + 1, 0).astype(np.int64)


def confidence_boost(probs: np.ndarray | pd.Series | Sequence[np.ndarray],
                     promotion: np.ndarray) -> np.ndarray:
    """Probability gained after promotion: last layer minus the promotion layer.

    Args:
        probs: ``(n, n_layers)`` probabilities of the final prediction.
        promotion: ``(n,)`` 0-based promotion layers (:func:`promotion_layer`).

    Returns:
        ``(n,)`` float differences (0 when promoted only at the last layer).

    """
    probs = stack(probs).astype(np.float64)
    promotion = np.asarray(promotion, dtype=np.int64)
    return probs[:, -1] - probs[np.arange(len(probs)), promotion]


def normalised_depth(n_layers: int) -> np.ndarray:
    """Relative depth of each layer, for comparing models: layer ``i`` -> ``(i + 1) / n_layers``.

    Returns:
        ``(n_layers,)`` floats in ``(0, 1]``; the last layer is 1.

    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return np.arange(1, n_layers + 1) / n_layers


def per_example_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Add promotion and confidence-boost columns to projection results.

    Args:
        frame: :func:`memrecall.project` output (``pred_rank``, ``pred_prob`` columns), e.g.
            after :func:`label_groups`.

    Returns:
        A copy with ``n_layers``, ``promotion_layer`` (0-based), ``promotion_depth``
        (``(promotion_layer + 1) / n_layers``, comparable across models), ``final_prob``
        (probability of the prediction at the last layer) and ``confidence_boost``.

    """
    ranks, probs = stack(frame["pred_rank"]), stack(frame["pred_prob"])
    promotion = promotion_layer(ranks)
    out = frame.copy()
    out["n_layers"] = ranks.shape[1]
    out["promotion_layer"] = promotion
    out["promotion_depth"] = (promotion + 1) / ranks.shape[1]
    out["final_prob"] = probs[:, -1].astype(np.float64)
    out["confidence_boost"] = confidence_boost(probs, promotion)
    return out


# --------------------------------------------------------------------------- summaries


def bootstrap_mean_ci(values: np.ndarray, ci: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means with a percentile bootstrap interval.

    Args:
        values: ``(n, L)`` samples (rows are examples).
        ci: coverage of the interval.
        n_boot: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        ``(L,)`` arrays ``mean, lo, hi``; with one row the interval is the point itself.

    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = values.mean(axis=0)
    if n == 1:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    # A resample is a vector of counts per row; (n_boot, n) @ (n, L) gives every resample's mean.
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    boots = counts @ values / n
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha], axis=0)
    return mean, lo, hi


def layer_summary(frame: pd.DataFrame, column: str, group_col: str = "group", ci: float = 0.95,
                  log: bool | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per-group, per-layer mean of a per-layer column with a bootstrap confidence interval.

    Args:
        frame: rows with a ``group_col`` and ``column`` holding arrays of length ``n_layers``.
        column: e.g. ``"pred_prob"``, ``"pred_rank"``, ``"target_rank"``.
        group_col: the grouping column.
        ci: interval coverage (percentile bootstrap, seeded, see module docstring).
        log: summarise ``log10(x + 1)`` and transform back, i.e. the geometric mean of
            ``x + 1`` minus 1 (interval likewise). Default: True for ``*_rank`` columns.
        n_boot: bootstrap resamples.
        seed: resampling seed.

    Returns:
        Long frame, ``n_groups * n_layers`` rows: ``group, layer`` (1-based), ``mean, lo, hi,
        n`` and ``statistic`` (``"mean"`` or ``"geometric mean"``). Groups in
        :func:`group_order`.

    """
    if log is None:
        log = column.endswith("rank")
    parts = []
    for group in group_order(frame[group_col]):
        values = stack(frame.loc[frame[group_col] == group, column]).astype(np.float64)
        if log:
            values = np.log10(values + 1)
        mean, lo, hi = bootstrap_mean_ci(values, ci=ci, n_boot=n_boot, seed=seed)
        if log:
            mean, lo, hi = (10**x - 1 for x in (mean, lo, hi))
        parts.append(pd.DataFrame({
            "group": group, "layer": np.arange(1, len(mean) + 1), "mean": mean, "lo": lo,
            "hi": hi, "n": len(values), "statistic": "geometric mean" if log else "mean",
        }))
    if not parts:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]


# --------------------------------------------------------------------------- tests


def compare_groups(values_a: Sequence[float] | np.ndarray,
                   values_b: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Two-sided Mann–Whitney U test of two samples, with its effect size.

    The effect size is the rank-biserial correlation ``2 U_a / (n_a n_b) - 1``, equal to Cliff's
    delta ``P(a > b) - P(a < b)``: +1 when every ``a`` exceeds every ``b``, 0 for no shift.

    Args:
        values_a: ``(n_a,)`` sample (NaNs dropped).
        values_b: ``(n_b,)`` sample (NaNs dropped).

    Returns:
        ``n_a, n_b, median_a, median_b, u`` (U of sample a), ``p_value``, ``rank_biserial``.

    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"both samples need values (got {len(a)} and {len(b)})")
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    u = float(result.statistic)
    return {
        "n_a": len(a), "n_b": len(b),
        "median_a": float(np.median(a)), "median_b": float(np.median(b)),
        "u": u, "p_value": float(result.pvalue),
        "rank_biserial": 2 * u / (len(a) * len(b)) - 1,
    }


def compare_table(table: pd.DataFrame, column: str, reference: str = "memorized",
                  group_col: str = "group") -> pd.DataFrame:
    """:func:`compare_groups` of ``reference`` against every other group, one row each.

    Args:
        table: per-example rows (e.g. :func:`per_example_table`).
        column: a scalar column such as ``"promotion_layer"`` or ``"confidence_boost"``.
        reference: the group tested against the others (sample ``a``).
        group_col: the grouping column.

    Returns:
        Columns ``column, reference, other`` and the keys of :func:`compare_groups`.

    """
    ref = table.loc[table[group_col] == reference, column]
    rows = []
    for other in group_order(table[group_col]):
        if other != reference:
            stats_row = compare_groups(ref, table.loc[table[group_col] == other, column])
            rows.append({"column": column, "reference": reference, "other": other, **stats_row})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- notebook helpers


def _last_word_span(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    start = max(stripped.rfind(" "), stripped.rfind("\t"), stripped.rfind("\n")) + 1
    return start, len(stripped)


def multi_token_fraction(targets: Iterable[str], tokenizer: Any) -> float:
    """Fraction of texts whose last word is split into more than one sub-token.

    The last word is tokenized in context (the whole text, the tokenizer's offsets), so
    a leading space or a SentencePiece ``▁`` is counted as it really occurs.

    Args:
        targets: texts whose last whitespace-separated word is the target (or bare words).
        tokenizer: a fast Hugging Face tokenizer (offsets needed).

    Returns:
        A fraction in ``[0, 1]``.

    """
    texts = [str(t) for t in targets]
    if not texts:
        raise ValueError("no targets")
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    multi = 0
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        start, end = _last_word_span(text)
        inside = [(s, e) for s, e in offsets if e > s and e > start and s < end]
        multi += len(inside) > 1
    return multi / len(texts)


def _key(group: str) -> str:
    return group.replace("facts: ", "facts_").replace("-", "_").replace(" ", "_")


def summary_row(model: str, idiom_res: pd.DataFrame,
                wiki_res: pd.DataFrame | None = None) -> dict[str, Any]:
    """One row of ``results/<profile>/summary.csv`` for a model.

    Args:
        model: the model's name.
        idiom_res: :func:`memrecall.project` output for the idioms.
        wiki_res: the same for Wikipedia sentences (optional).

    Returns:
        ``model, n_layers, n_idioms, n_memorized, memorized_pct``, then for each group
        (``memorized``, ``non_memorized``, ``wikipedia``) ``n_<g>``,
        ``median_promotion_layer_<g>`` (0-based, like :func:`promotion_layer`) and
        ``median_promotion_depth_<g>`` (fraction of the depth, comparable across models);
        NaN for an empty group.

    """
    table = per_example_table(label_groups(idiom_res, wiki_res))
    n_idioms = len(idiom_res)
    n_memorized = int(idiom_res["is_memorized"].sum())
    row: dict[str, Any] = {
        "model": model, "n_layers": int(table["n_layers"].iloc[0]), "n_idioms": n_idioms,
        "n_memorized": n_memorized,
        "memorized_pct": 100 * n_memorized / n_idioms if n_idioms else float("nan"),
    }
    for group in GROUPS:
        rows = table[table["group"] == group]
        key = _key(group)
        row[f"n_{key}"] = len(rows)
        for column in ("promotion_layer", "promotion_depth"):
            value = float(rows[column].median()) if len(rows) else float("nan")
            row[f"median_{column}_{key}"] = value
    return row


def suggest_split_layer(table: pd.DataFrame, group: str = "memorized",
                        group_col: str = "group") -> float:
    """Where promotion ends for ``group``: its median promotion layer, 1-based (for plot axes).

    Args:
        table: :func:`per_example_table` output.
        group: the group whose promotion marks the split.
        group_col: the grouping column.

    Returns:
        ``median(promotion_layer) + 1``, to pass as ``split_layer`` to the layer-wise plots.

    """
    rows = table.loc[table[group_col] == group, "promotion_layer"]
    if rows.empty:
        raise ValueError(f"no rows in group {group!r}")
    return float(rows.median()) + 1


def summaries_by_model(results: Mapping[str, pd.DataFrame], column: str,
                       **kwargs: Any) -> dict[str, pd.DataFrame]:
    """:func:`layer_summary` of ``column`` for each model's labelled frame (for cross-model plots).

    Args:
        results: model name -> frame with a ``group`` column (:func:`label_groups`).
        column: the per-layer column.
        **kwargs: passed to :func:`layer_summary`.

    Returns:
        model name -> long summary frame.

    """
    return {model: layer_summary(frame, column, **kwargs) for model, frame in results.items()}


# --------------------------------------------------------------------------- memorization split


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


def target_token_counts(probes: pd.DataFrame, tokenizer: Any) -> np.ndarray:
    """How many sub-tokens each probe's target spans, in context (what greedy decoding must emit).

    Counts the tokens of ``prompt + " " + target`` that end after the prompt (a lone
    SentencePiece ``▁`` or a zero-width byte-level ``Ġ`` before the word counts, as in
    :func:`memrecall.make_probes`).

    Args:
        probes: :func:`memrecall.make_probes` output (``prompt``, ``target``; uses ``text`` if
            present).
        tokenizer: a fast Hugging Face tokenizer.

    Returns:
        ``(n,)`` int counts, at least 1.

    """
    prompts = probes["prompt"].astype(str).tolist()
    if "text" in probes:
        texts = probes["text"].astype(str).tolist()
    else:
        texts = [f"{p} {t}" for p, t in zip(prompts, probes["target"].astype(str))]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    counts = []
    for prompt, offsets in zip(prompts, encoded["offset_mapping"], strict=True):
        end = len(prompt)
        counts.append(max(1, sum(1 for s, e in offsets if e > end or s == e >= end)))
    return np.asarray(counts, dtype=np.int64)


def whole_word_continuation(lm: Any, probes: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
    """Greedy continuation of each prompt for as many tokens as its target word has.

    The model reads exactly what :func:`memrecall.project` reads (the tokenizer's own special
    tokens, no extra context). Prompts are left-padded in batches of equal target length and
    decoded step by step with argmax (no sampling, no KV cache: targets are a few tokens; only
    the last position's logits are computed).

    Args:
        lm: a causal :class:`memrecall.LM` (masked LMs predict one mask, not a continuation).
        probes: :func:`memrecall.make_probes` output (``prompt``, ``target``), or
            :func:`memrecall.project` output: then its ``pred_token`` is taken as the first
            greedy token (no forward pass for single-token targets, and exactly consistent
            with ``is_memorized``).
        batch_size: prompts per forward pass.

    Returns:
        One row per probe, same order: ``n_target_tokens``, ``first_token`` (the greedy next
        token, the same as ``pred_token`` of :func:`memrecall.project` up to float rounding),
        ``continuation`` (the decoded tokens, stripped) and ``whole_word`` (``continuation ==
        target``).

    Raises:
        ValueError: ``lm`` is a masked LM.

    """
    import torch

    from .lens import model_inputs

    if lm.is_masked:
        raise ValueError(f"{lm.name} is a masked LM: greedy continuation needs a causal LM")
    frame = probes.reset_index(drop=True)
    counts = target_token_counts(frame, lm.tokenizer)
    ids, _ = model_inputs(lm, frame["prompt"].astype(str).tolist())
    pad = lm.tokenizer.pad_token_id
    pad = pad if pad is not None else (lm.tokenizer.eos_token_id or 0)
    known = frame["pred_token"].to_numpy(dtype=np.int64) if "pred_token" in frame else None
    generated: list[list[int]] = [[] for _ in ids]
    with torch.inference_mode():
        for n_steps in np.unique(counts):
            rows = np.flatnonzero(counts == n_steps)
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                seqs = [list(ids[i]) for i in batch]
                if known is not None:
                    for seq, i in zip(seqs, batch, strict=True):
                        seq.append(int(known[i]))
                for _ in range(int(n_steps) - (known is not None)):
                    longest = max(map(len, seqs))
                    input_ids = torch.tensor([[pad] * (longest - len(s)) + s for s in seqs],
                                             device=lm.device)
                    mask = torch.tensor([[0] * (longest - len(s)) + [1] * len(s) for s in seqs],
                                        device=lm.device)
                    positions = (mask.cumsum(1) - 1).clamp(min=0)
                    logits = lm.model(input_ids=input_ids, attention_mask=mask,
                                      position_ids=positions, use_cache=False,
                                      logits_to_keep=1).logits[:, -1]
                    for seq, token in zip(seqs, logits.argmax(-1).tolist(), strict=True):
                        seq.append(int(token))
                for i, seq in zip(batch, seqs, strict=True):
                    generated[i] = seq[len(ids[i]):]
    continuation = [lm.tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated]
    targets = frame["target"].astype(str).str.strip().tolist()
    return pd.DataFrame({
        "n_target_tokens": counts,
        "first_token": [g[0] for g in generated],
        "continuation": continuation,
        "whole_word": [c == t for c, t in zip(continuation, targets, strict=True)],
    })


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
