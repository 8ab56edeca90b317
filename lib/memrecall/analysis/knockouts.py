"""Numbers over a per-probe knockout sweep, the paper's way: 0-based layers, no prose.

The sweep (:func:`memrecall.interventions.knockout_sweep` with ``per_probe=True``) gives one row
per (configuration, probe). Here:

* :func:`knockout_table`: per ([group,] configuration) the % of predictions changed, the mean
  change of the target's rank and of its probability (percentage points, and relative to its
  clean value in %, :func:`relative_prob_change`: the paper's Figure 9 unit), each with a
  percentile bootstrap interval over probes (:func:`memrecall.analysis.bootstrap_mean_ci`);
* :func:`first_layer_dominance`: does knocking out layer 1 alone change more than any other
  single layer (the paper: 99% vs at most 20% for the non-dominant knockout)?
* :func:`norm_comparison`: two tables side by side, the post-MLP norm frozen and recomputed
  (Gemma 2/3: :mod:`memrecall.interventions.knockout`);
* :func:`depth_slopes` / :func:`line_slopes`: the slope of % changed against relative depth for
  windows of one size (the paper's Figure 7: 3-layer non-dominant windows), over the early
  layers (from layer 2 to ``split`` of the depth) and over the rest: does the effect fall early
  and flatten after? (:func:`depth_slope_samples`: the slopes of each bootstrap resample;
  :mod:`.knockout_claims` tests the claims with them);
* :func:`paper_window_matrix`: the paper's digitized Figures 3, 8 and 9 as start x end matrices.

Relative depth of a window is its first layer (1-based) over the number of layers, as the
paper's per-layer curves (:mod:`memrecall.data.paper`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import paper
from ..interventions import CONTROL_TABLE, SWEEP_KEYS
from .projection import bootstrap_mean_ci, group_order, label_groups

__all__ = ["PAPER_KINDS", "READOUTS", "depth_slope_samples", "depth_slopes",
           "first_layer_dominance", "knockout_probe_groups", "knockout_table", "line_slopes",
           "norm_comparison", "paper_window_matrix", "relative_prob_change", "window_depth"]

READOUTS = ("changed_pct", "target_rank_change", "target_prob_change",
            "target_prob_change_rel")
"""The read-outs per configuration and group: % changed, mean rank change, mean probability
change (points) and mean relative probability change (% of the clean probability)."""

PAPER_KINDS = {c.name: c.paper_kind for c in CONTROL_TABLE if c.paper_kind}
"""Our control names -> the paper's (:func:`memrecall.data.paper.knockouts` ``kind``)."""





def knockout_probe_groups(idiom_res: pd.DataFrame, wiki_res: pd.DataFrame | None, n: int,
                          seed: int = 0) -> pd.DataFrame:
    """The probes of a knockout sweep: up to ``n`` memorized, non-memorized and Wikipedia probes.

    Args:
        idiom_res: lens results of the idioms (``prompt``, ``target``, ``target_token``,
            ``is_memorized``; e.g. :func:`memrecall.pipeline.idiom_results`).
        wiki_res: the same for the Wikipedia control texts (None: no Wikipedia group).
        n: probes per group; a smaller group is taken whole (a missing one is absent).
        seed: seeds the sample of each group.

    Returns:
        One frame (fresh index; groups in :data:`GROUPS` order, each in its original order) with
        ``group``, ``source`` and the probe columns (``text``, ``prompt``, ``target``,
        ``target_token``, ``is_memorized``, ``promotion_layer``) present in the inputs.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    labelled = label_groups(idiom_res, wiki_res)
    keep = [c for c in ("group", "source", "text", "prompt", "target", "target_token",
                        "is_memorized", "promotion_layer") if c in labelled.columns]
    parts = []
    for group in group_order(labelled["group"]):
        rows = labelled[labelled["group"] == group]
        if len(rows) > n:
            rows = rows.sample(n=n, random_state=seed).sort_index()
        parts.append(rows[keep])
    if not parts:
        return pd.DataFrame(columns=keep)
    return pd.concat(parts, ignore_index=True)



def window_depth(start_layer: np.ndarray | pd.Series | int, n_layers: int) -> np.ndarray:
    """Relative depth of windows starting at 0-based ``start_layer``: ``(start + 1) / n_layers``."""
    return (np.asarray(start_layer, dtype=np.float64) + 1) / n_layers


def relative_prob_change(detail: pd.DataFrame) -> pd.Series:
    """Per row, the change of the target's probability relative to its clean value, in %.

    ``100 * (target_prob - base_target_prob) / base_target_prob``: -100 when the knockout
    takes all of it, unbounded above (a target at 1e-5 raised to 1e-3 is +9900). NaN where the
    clean probability is 0 (underflow), where no relative change exists.

    Args:
        detail: the per-probe sweep (``base_target_prob``, ``target_prob``).
    """
    before = detail["base_target_prob"].to_numpy(np.float64)
    after = detail["target_prob"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(before > 0, 100 * (after - before) / before, np.nan)
    return pd.Series(rel, index=detail.index, name="target_prob_change_rel")


def _per_probe(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """``(n_probes, n_windows)`` matrix of one read-out (columns: ``(start, end)``)."""
    return rows.pivot(index="probe", columns=["start_layer", "end_layer"], values=value)


def knockout_table(detail: pd.DataFrame, group_column: str = "group", ci: float = 0.95,
                   n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per ([group,] configuration): the read-outs with bootstrap intervals over probes.

    Args:
        detail: the per-probe sweep.
        group_column: summarise per this column when present.
        ci: coverage of the intervals.
        n_boot: bootstrap resamples (the same resamples of probes for every window).
        seed: seeds the resampling.

    Returns:
        ``[group,]`` configuration keys (0-based layers), ``n_probes`` and, for each read-out of
        :data:`READOUTS` present (``changed_pct`` in %, ``target_rank_change`` in ranks,
        ``target_prob_change`` in percentage points, both after - before;
        ``target_prob_change_rel``, :func:`relative_prob_change` in %, when the sweep holds
        ``base_target_prob`` and ``target_prob``), its mean and ``_lo`` / ``_hi`` interval (a
        NaN probe makes its cell NaN).
    """
    detail = detail.assign(changed_pct=100 * detail["changed"].astype(np.float64))
    if {"base_target_prob", "target_prob"} <= set(detail.columns):
        detail = detail.assign(target_prob_change_rel=relative_prob_change(detail))
    readouts = [r for r in READOUTS if r in detail.columns]
    keys = ([group_column] if group_column in detail.columns else []) \
        + ["control", "k_requested", "k"]
    frames = []
    for key, rows in detail.groupby(keys, sort=False):
        part = None
        for value in readouts:
            matrix = _per_probe(rows, value)
            mean, lo, hi = bootstrap_mean_ci(matrix.to_numpy(np.float64), ci, n_boot, seed)
            if part is None:
                part = pd.DataFrame(list(matrix.columns), columns=["start_layer", "end_layer"])
                for name, level in zip(keys, key if isinstance(key, tuple) else (key,)):
                    part[name] = level
                part["window"] = part["end_layer"] - part["start_layer"] + 1
                part["n_probes"] = len(matrix)
            part[value], part[f"{value}_lo"], part[f"{value}_hi"] = mean, lo, hi
        frames.append(part)
    head = keys[:-3] + SWEEP_KEYS + ["n_probes"]
    table = pd.concat(frames, ignore_index=True)
    return table[head + [c for c in table.columns if c not in head]]


def first_layer_dominance(table: pd.DataFrame, control: str, group: str | None = None,
                          value: str = "changed_pct") -> dict | None:
    """Layer 1 alone against the strongest other single layer, for one control (and group).

    Args:
        table: :func:`knockout_table` (or any frame with ``control``, ``window``,
            ``start_layer``, ``value`` and optionally ``value_lo`` / ``value_hi``).
        control: the control.
        group: the group (None: no ``group`` column, or keep every row).
        value: the read-out.

    Returns:
        ``first``, ``first_lo``, ``first_hi`` (layer 0), ``other_layer`` (0-based, the strongest
        other single layer), ``other``, ``other_lo``, ``other_hi``, and ``dominates``: the
        first layer's interval lies above the other's (its point above it, without intervals);
        None when the rows are missing.
    """
    rows = table[(table["control"] == control) & (table["window"] == 1)]
    if group is not None and "group" in rows.columns:
        rows = rows[rows["group"] == group]
    first, others = rows[rows["start_layer"] == 0], rows[rows["start_layer"] > 0]
    if first.empty or others.empty:
        return None
    first, other = first.iloc[0], others.loc[others[value].idxmax()]

    def bounds(row: pd.Series) -> tuple[float, float]:
        return (float(row.get(f"{value}_lo", row[value])),
                float(row.get(f"{value}_hi", row[value])))

    (first_lo, first_hi), (other_lo, other_hi) = bounds(first), bounds(other)
    separated = first_lo > other_hi if f"{value}_lo" in rows.columns else \
        first[value] > other[value]
    return {"first": float(first[value]), "first_lo": first_lo, "first_hi": first_hi,
            "other_layer": int(other["start_layer"]), "other": float(other[value]),
            "other_lo": other_lo, "other_hi": other_hi, "dominates": bool(separated)}


def norm_comparison(frozen: pd.DataFrame, free: pd.DataFrame,
                    value: str = "changed_pct") -> pd.DataFrame:
    """One read-out of two knockout tables, side by side: the post-MLP norm frozen or not.

    Args:
        frozen: :func:`knockout_table` of a sweep with ``frozen_norm=True``.
        free: the same sweep with ``frozen_norm=False``.
        value: the read-out (:data:`READOUTS`).

    Returns:
        One row per ``[group,]`` configuration present in both (:data:`SWEEP_KEYS` with
        ``window``, 0-based layers, in ``frozen``'s order): ``{value}_frozen`` and
        ``{value}_free``, each with its ``_lo`` / ``_hi`` interval where the tables have them,
        and ``difference`` (frozen - free).
    """
    keys = (["group"] if "group" in frozen.columns else []) + SWEEP_KEYS
    values = [c for c in (value, f"{value}_lo", f"{value}_hi") if c in frozen.columns]

    def named(table: pd.DataFrame, setting: str) -> pd.DataFrame:
        return table[keys + values].rename(
            columns={c: c.replace(value, f"{value}_{setting}", 1) for c in values})

    out = named(frozen, "frozen").merge(named(free, "free"), on=keys, how="inner")
    out["difference"] = out[f"{value}_frozen"] - out[f"{value}_free"]
    return out


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of ``y`` (``(..., n)``) against ``x`` (``(n,)``)."""
    dx = x - x.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) * dx).sum(-1) / (dx**2).sum()


def _early_late(depth: np.ndarray, start_layer: np.ndarray,
                split: float) -> tuple[np.ndarray, np.ndarray]:
    early = (start_layer > 0) & (depth <= split)
    return early, depth > split


def line_slopes(depth: np.ndarray, values: np.ndarray, start_layer: np.ndarray,
                split: float = 0.4) -> dict:
    """Slopes of a line (e.g. the paper's Figure 7) before and after ``split`` of the depth.

    Early: windows from the second layer (``start_layer`` 0-based > 0: layer 1 is
    :func:`first_layer_dominance`'s question) to relative depth ``split``; late: the rest.

    Returns:
        ``early_slope``, ``late_slope`` (value units per unit of relative depth: a fall from
        72% to 40% over 0.33 of the depth is about -100), ``n_early``, ``n_late``.
    """
    depth, values = np.asarray(depth, np.float64), np.asarray(values, np.float64)
    early, late = _early_late(depth, np.asarray(start_layer), split)
    return {"early_slope": float(_slopes(depth[early], values[early])) if early.sum() > 1
            else np.nan,
            "late_slope": float(_slopes(depth[late], values[late])) if late.sum() > 1
            else np.nan,
            "n_early": int(early.sum()), "n_late": int(late.sum())}


def depth_slope_samples(rows: pd.DataFrame, n_layers: int, split: float = 0.4,
                        value: str = "changed", n_boot: int = 2000,
                        seed: int = 0) -> dict:
    """:func:`line_slopes` of one line of windows and of its bootstrap resamples of probes.

    Each resample draws probes with replacement (the same draw for every window, so a resample
    is a whole line) and refits both slopes.

    Args:
        rows: per-probe sweep rows of one control, one window size, one group and one k.
        n_layers: the model's layers (for relative depth).
        split: the relative depth that ends the early part.
        value: ``changed`` (in % of predictions) or another per-probe column.
        n_boot: bootstrap resamples.
        seed: seeds the resampling.

    Returns:
        ``n_probes``, ``early_slope``, ``late_slope``, ``n_early``, ``n_late`` (of the mean
        line) and ``early_boot``, ``late_boot``: ``(n_boot,)`` slopes of the resampled lines
        (empty where a part has fewer than 2 windows).
    """
    scale = 100 if value == "changed" else 1
    matrix = rows.assign(_value=rows[value].astype(np.float64) * scale).pivot(
        index="probe", columns="start_layer", values="_value")
    starts = matrix.columns.to_numpy()
    depth = window_depth(starts, n_layers)
    values = matrix.to_numpy(np.float64)
    n = len(values)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=n_boot)
    boots = counts @ values / n  # (n_boot, n_windows)
    early, late = _early_late(depth, starts, split)
    out = {"n_probes": n, **line_slopes(depth, values.mean(0), starts, split)}
    for name, mask in (("early", early), ("late", late)):
        out[f"{name}_boot"] = (_slopes(depth[mask], boots[:, mask]) if mask.sum() > 1
                               else np.empty(0))
    return out


def depth_slopes(detail: pd.DataFrame, n_layers: int, control: str = "non_dominant",
                 window: int = 3, split: float = 0.4, value: str = "changed",
                 ci: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """:func:`line_slopes` of one control's windows of one size, per group, with intervals.

    The intervals are percentiles of :func:`depth_slope_samples` (resampled probes, the same
    resamples for every window, so each resample is a whole line).

    Args:
        detail: the per-probe sweep.
        n_layers: the model's layers (for relative depth).
        control: the control.
        window: the window size (the paper's Figure 7: 3).
        split: the relative depth that ends the early part (the paper: about 0.4).
        value: ``changed`` (slopes in % of predictions per unit depth) or another per-probe
            column.
        ci: coverage.
        n_boot: bootstrap resamples.
        seed: seeds the resampling.

    Returns:
        One row per group (one row without a ``group`` column): ``n_probes``, ``early_slope``,
        ``early_lo``, ``early_hi``, ``late_slope``, ``late_lo``, ``late_hi``, ``n_early``,
        ``n_late``.
    """
    rows = detail[(detail["control"] == control) & (detail["window"] == window)]
    groups = rows.groupby("group", sort=False) if "group" in rows.columns else [(None, rows)]
    alpha = (1 - ci) / 2
    out = []
    for group, part in groups:
        samples = depth_slope_samples(part, n_layers, split, value, n_boot, seed)
        row = {"group": group, **{k: v for k, v in samples.items() if not k.endswith("_boot")}}
        for name in ("early", "late"):
            boots = samples[f"{name}_boot"]
            lo, hi = np.quantile(boots, [alpha, 1 - alpha]) if len(boots) else (np.nan, np.nan)
            row[f"{name}_lo"], row[f"{name}_hi"] = float(lo), float(hi)
        out.append(row)
    columns = ["group", "n_probes", "early_slope", "early_lo", "early_hi", "late_slope",
               "late_lo", "late_hi", "n_early", "n_late"]
    frame = pd.DataFrame(out, columns=columns)
    return frame if "group" in rows.columns else frame.drop(columns="group")


def paper_window_matrix(figure: str, control: str) -> pd.DataFrame:
    """The paper's digitized heatmap (GPT-2 medium) as a start x end matrix, 0-based like ours.

    Args:
        figure: ``figure3`` (% changed), ``figure8`` (mean rank increase) or ``figure9`` (mean
            probability decrease, relative % of the clean probability: values up to 95.5
            where GPT-2 medium's memorized targets average about 0.64, so not points).
        control: ``dominant`` or ``non_dominant``.

    Returns:
        ``(24, 24)`` frame (index = start layer, columns = end layer, 0-based), NaN outside
        windows of 1-3 layers (and where the paper has no cell).
    """
    frame = paper.knockouts(figure)
    rows = frame[frame["kind"] == PAPER_KINDS[control]]
    size = paper.n_layers("gpt2-medium")
    matrix = rows.assign(start_layer=rows["start"] - 1, end_layer=rows["end"] - 1).pivot(
        index="start_layer", columns="end_layer", values="value")
    matrix = matrix.reindex(index=range(size), columns=range(size)).astype(float)
    matrix.index.name, matrix.columns.name = "start_layer", "end_layer"
    return matrix
