"""Small helpers for the exploratory notebooks (03 layer-wise projection, 04 facts).

* :func:`layer_top_tokens` / :func:`layer_top_k`: the top-k tokens of every layer for one prompt,
  read through the same lens as :func:`memrecall.project` (block output, the model's own final
  norm / MLM head, unembedding with bias and soft-capping); :func:`style_top_tokens` colours such
  a table by probability for display.
* :func:`is_batch_run`: whether the notebook runs unattended (papermill, ``make reproduce``), so
  interactive widgets are created only when someone can use them.
* :func:`group_tests`: Mann–Whitney tests of per-example measures between groups that skip, with a
  note, groups too small to test (tiny random models in the smoke profile); :func:`verdict` puts
  one test into a sentence.
* :func:`summary_record`: one row of ``results/<profile>/summary.csv``, promotion layers 1-based.

Layer numbers shown to people (tables, verdicts, the summary CSV) are 1-based, as on the figures'
axes: layer ``i + 1`` is the output of block ``i``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import analysis
from .lens import _logits, block_outputs, model_inputs
from .models import LM
from .progress import PLAIN_ENV

INTERACTIVE_ENV = "MEMRECALL_INTERACTIVE"
"""``1`` forces :func:`is_batch_run` to False (interactive), ``0`` forces True."""

# Environment variables that only an interactive front end sets for the kernel it starts:
# jupyter_server (JupyterLab, Notebook 7) names the session, VS Code passes its own pid.
FRONTEND_ENVS = ("JPY_SESSION_NAME", "VSCODE_PID")

MEASURE_LABELS = {
    "promotion_layer": "promotion layer (1-based)",
    "promotion_depth": "promotion depth (layer / n_layers)",
    "confidence_boost": "confidence boost (probability)",
    "final_prob": "final probability",
}


# --------------------------------------------------------------------------- top tokens


def layer_top_k(lm: LM, prompt: str, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` token ids and probabilities of every layer at the prediction position.

    Same lens and inputs as :func:`memrecall.project` (causal LMs predict after the prompt,
    masked LMs at ``prompt + " [MASK]."``), so row ``n_layers - 1`` is the model's own output.

    Args:
        lm: a loaded model.
        prompt: one prompt (e.g. an idiom without its last word).
        k: tokens per layer.

    Returns:
        ``ids`` ``(n_layers, k)`` int64 and ``probs`` ``(n_layers, k)`` float32, best first.

    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ids, positions = model_inputs(lm, [prompt])
    with torch.inference_mode():
        hidden = block_outputs(lm, ids, positions)[:, 0]  # (n_layers, d)
        normed = lm.arch.pre_unembed(hidden.to(lm.dtype)).float()
        probs = torch.softmax(_logits(lm, normed, 0, lm.vocab_size), dim=-1)
        top = probs.topk(min(k, lm.vocab_size), dim=-1)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()


def token_label(tokenizer: Any, token: int) -> str:
    """A token as text with visible leading/trailing spaces (``"␣eye"``)."""
    text = tokenizer.decode([int(token)])
    stripped = text.strip(" ")
    lead, trail = len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))
    if not stripped:
        return "␣" * len(text) if text else repr(text)
    return "␣" * lead + stripped.replace("\n", "\\n") + "␣" * trail


def _top_table(lm: LM, ids: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    cells = [[f"{token_label(lm.tokenizer, t)} ({p:.2f})" for t, p in zip(row, prow, strict=True)]
             for row, prow in zip(ids, probs, strict=True)]
    table = pd.DataFrame(cells, columns=[f"top {j + 1}" for j in range(ids.shape[1])])
    table.index = pd.RangeIndex(1, len(table) + 1, name="layer")
    return table


def layer_top_tokens(lm: LM, prompt: str, k: int = 5) -> pd.DataFrame:
    """The top-``k`` tokens of every layer, as a table to read.

    Args:
        lm: a loaded model.
        prompt: one prompt.
        k: tokens per layer.

    Returns:
        ``n_layers`` rows (index ``layer``, 1-based) and ``k`` columns ``top 1 .. top k``;
        each cell is ``"token (probability)"`` with spaces shown as ``␣``.

    """
    return _top_table(lm, *layer_top_k(lm, prompt, k))


def style_top_tokens(lm: LM, prompt: str, k: int = 5, target: int | None = None,
                     caption: str | None = None) -> Any:
    """:func:`layer_top_tokens` as a pandas ``Styler``: cells shaded by probability.

    Args:
        lm: a loaded model.
        prompt: one prompt.
        k: tokens per layer.
        target: a token id to mark in bold (e.g. the idiom's target), or None.
        caption: the table's caption (default: the prompt).

    Returns:
        A ``pandas.io.formats.style.Styler`` (displays as an HTML table).

    """
    ids, probs = layer_top_k(lm, prompt, k)
    table = _top_table(lm, ids, probs)
    gmap = pd.DataFrame(probs, index=table.index, columns=table.columns)
    styler = table.style.background_gradient(cmap="Blues", gmap=gmap, axis=None, vmin=0, vmax=1.4)
    if target is not None:
        marked = pd.DataFrame(np.where(ids == target, "font-weight: bold; color: #D55E00", ""),
                              index=table.index, columns=table.columns)
        styler = styler.apply(lambda _: marked, axis=None)
    return styler.set_caption(caption if caption is not None else f"{lm.name}: {prompt!r} …")


# --------------------------------------------------------------------------- batch or not


def is_batch_run(environ: dict[str, str] | None = None, shell: Any = "auto") -> bool:
    """Whether this runs unattended, where interactive widgets would be useless.

    True for ``make reproduce`` (it sets ``$MEMRECALL_PLAIN_PROGRESS``), outside a Jupyter kernel
    (a script, a terminal IPython), and for a kernel that no front end started (papermill,
    nbconvert): JupyterLab/Notebook (``$JPY_SESSION_NAME``) and VS Code (``$VSCODE_PID``) mark
    the kernels they start. ``$MEMRECALL_INTERACTIVE`` (``1`` / ``0``) overrides all of this.

    Args:
        environ: the environment to read (default ``os.environ``).
        shell: the IPython shell (default: ``IPython.get_ipython()`` when IPython is imported).

    Returns:
        True when no one is there to click.

    """
    env = os.environ if environ is None else environ
    forced = env.get(INTERACTIVE_ENV, "").strip().lower()
    if forced in ("1", "true", "yes"):
        return False
    if forced in ("0", "false", "no"):
        return True
    if env.get(PLAIN_ENV):
        return True
    if isinstance(shell, str) and shell == "auto":
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return True
    return not any(env.get(name) for name in FRONTEND_ENVS)


# --------------------------------------------------------------------------- tests


def group_tests(table: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                measures: Sequence[str] = ("promotion_layer", "confidence_boost"),
                group_col: str = "group", min_n: int = 2) -> pd.DataFrame:
    """Two-sided Mann–Whitney tests of per-example measures between pairs of groups.

    Pairs where either group has fewer than ``min_n`` examples are kept with NaN statistics and a
    ``note`` saying why (so a smoke run with no memorized idiom prints a note, not a traceback).
    ``promotion_layer`` medians are reported 1-based (the test is shift-invariant).

    Args:
        table: :func:`memrecall.analysis.per_example_table` output with a ``group_col``.
        pairs: ``(a, b)`` group pairs; the effect size is positive when ``a`` tends to be larger.
        measures: scalar columns to compare.
        group_col: the grouping column.
        min_n: smallest group size tested.

    Returns:
        One row per measure and pair: ``measure, a, b, n_a, n_b, median_a, median_b, mean_a,
        mean_b, p_value, rank_biserial`` (Cliff's delta, ``P(a > b) - P(a < b)``) and ``note``
        ("" when tested). Medians and means are NaN for an empty group.

    """
    rows = []
    for measure in measures:
        for a, b in pairs:
            values_a = table.loc[table[group_col] == a, measure].to_numpy(dtype=np.float64)
            values_b = table.loc[table[group_col] == b, measure].to_numpy(dtype=np.float64)
            row: dict[str, Any] = {"measure": measure, "a": a, "b": b, "n_a": len(values_a),
                                   "n_b": len(values_b)}
            small = [f"{g!r} has {len(v)}" for g, v in ((a, values_a), (b, values_b))
                     if len(v) < min_n]
            shift = 1 if measure == "promotion_layer" else 0
            for suffix, values in (("a", values_a), ("b", values_b)):
                row[f"median_{suffix}"] = float(np.median(values)) + shift if len(values) \
                    else np.nan
                row[f"mean_{suffix}"] = float(np.mean(values)) + shift if len(values) else np.nan
            if small:
                row.update(p_value=np.nan, rank_biserial=np.nan,
                           note=f"not tested: {' and '.join(small)} example(s), need {min_n}")
            else:
                result = analysis.compare_groups(values_a, values_b)
                row.update(p_value=result["p_value"], rank_biserial=result["rank_biserial"],
                           note="")
            rows.append(row)
    columns = ["measure", "a", "b", "n_a", "n_b", "median_a", "median_b", "mean_a", "mean_b",
               "p_value", "rank_biserial", "note"]
    return pd.DataFrame(rows, columns=columns)


def group_medians(table: pd.DataFrame, group_col: str = "group") -> pd.DataFrame:
    """Per-group size and medians of the per-example measures (promotion layer 1-based).

    Args:
        table: :func:`memrecall.analysis.per_example_table` output.
        group_col: the grouping column.

    Returns:
        One row per group (in :func:`memrecall.analysis.group_order`): ``n``, the median of each
        measure in :data:`MEASURE_LABELS` (columns named by those labels), the mean confidence
        boost (its median is often 0: promoted at the last layer means no boost) and the
        percentage of examples promoted only at the last layer.

    """
    rows = []
    for group in analysis.group_order(table[group_col]):
        part = table[table[group_col] == group]
        row: dict[str, Any] = {"group": group, "n": len(part)}
        for measure, label in MEASURE_LABELS.items():
            values = part[measure].to_numpy(dtype=np.float64)
            shift = 1 if measure == "promotion_layer" else 0
            row[f"median {label}"] = float(np.median(values)) + shift if len(values) else np.nan
        boosts = part["confidence_boost"].to_numpy(dtype=np.float64)
        row["mean confidence boost (probability)"] = float(boosts.mean()) if len(boosts) \
            else np.nan
        last = part["n_layers"] - 1
        row["promoted only at the last layer (%)"] = (
            100 * float((part["promotion_layer"] == last).mean()) if len(part) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("group")


def verdict(test: pd.Series | dict[str, Any], n_layers: int | None = None,
            alpha: float = 0.05) -> str:
    """One sentence on one row of :func:`group_tests`.

    Args:
        test: a row of :func:`group_tests`.
        n_layers: the model's depth, to write "layer 9 of 18" (optional).
        alpha: significance level of the two-sided test.

    Returns:
        E.g. ``"promotion layer: memorized earlier than non-memorized (median 9 vs 14 of 18;
        p = 3.1e-05, Cliff's delta = -0.41)"``.

    """
    measure, a, b = test["measure"], test["a"], test["b"]
    label = MEASURE_LABELS.get(measure, measure).split(" (")[0]
    if test["note"]:
        return f"{label}: {a} vs {b}: {test['note']}"
    of = f" of {n_layers}" if n_layers and measure == "promotion_layer" else ""
    medians = f"median {test['median_a']:.3g} vs {test['median_b']:.3g}{of}"
    if measure not in ("promotion_layer", "promotion_depth") and "mean_a" in test:
        medians += f", mean {test['mean_a']:.3g} vs {test['mean_b']:.3g}"
    numbers = f"p = {test['p_value']:.2g}, Cliff's delta = {test['rank_biserial']:+.2f}"
    if not test["p_value"] < alpha:
        return f"{label}: {a} vs {b}: no significant difference ({medians}; {numbers})"
    higher = test["rank_biserial"] > 0
    if measure in ("promotion_layer", "promotion_depth"):
        word = "later" if higher else "earlier"
    else:
        word = "larger" if higher else "smaller"
    return f"{label}: {a} {word} than {b} ({medians}; {numbers})"


# --------------------------------------------------------------------------- summary.csv


def summary_record(model: str, idiom_res: pd.DataFrame,
                   wiki_res: pd.DataFrame | None = None) -> dict[str, Any]:
    """One row of ``results/<profile>/summary.csv``, promotion layers 1-based.

    :func:`memrecall.analysis.summary_row` with promotion layers made 1-based
    (``median_promotion_layer_1based_<group>``) and the mean confidence boost of each group
    added (``mean_confidence_boost_<group>``; its median is usually 0, see
    :func:`group_medians`).

    Args:
        model: the model's name.
        idiom_res: idiom results of :func:`memrecall.project` (or ``pipeline.idiom_results``).
        wiki_res: Wikipedia results (optional).

    Returns:
        A flat dict, one value per column.

    """
    row = analysis.summary_row(model, idiom_res, wiki_res)
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("median_promotion_layer_"):
            group = key.removeprefix("median_promotion_layer_")
            out[f"median_promotion_layer_1based_{group}"] = value + 1
        elif key == "memorized_pct":
            out[key] = round(value, 1)
        elif key.startswith("median_promotion_depth_"):
            out[key] = round(value, 3)
        else:
            out[key] = value
    table = analysis.per_example_table(analysis.label_groups(idiom_res, wiki_res))
    for group in analysis.GROUPS:
        boosts = table.loc[table["group"] == group, "confidence_boost"]
        key = group.replace("-", "_")
        out[f"mean_confidence_boost_{key}"] = (round(float(boosts.mean()), 4)
                                               if len(boosts) else float("nan"))
    return out


# --------------------------------------------------------------------------- figures' split line


def split_layer(table: pd.DataFrame, group: str = "memorized",
                group_col: str = "group") -> float | None:
    """Where to draw the "Candidate Promotion | Confidence Boosting" line, or None.

    :func:`memrecall.analysis.suggest_split_layer` (the group's median promotion layer,
    1-based) when the group has examples and the line falls before the last layer; None when the
    group is empty or its median promotion is the last layer (no boosting phase to mark).

    Args:
        table: :func:`memrecall.analysis.per_example_table` output.
        group: the group whose promotion marks the split.
        group_col: the grouping column.

    Returns:
        A 1-based layer for the plots' ``split_layer``, or None.

    """
    rows = table[table[group_col] == group]
    if rows.empty:
        return None
    layer = analysis.suggest_split_layer(table, group=group, group_col=group_col)
    return layer if layer < int(rows["n_layers"].max()) else None


# --------------------------------------------------------------------------- widget


def idiom_explorer(lm: LM, results: pd.DataFrame, k: int = 5) -> Any:
    """A dropdown over probes that shows :func:`style_top_tokens` of the chosen one.

    Use it only where someone can click (see :func:`is_batch_run`).

    Args:
        lm: the loaded model the results belong to.
        results: ``prompt``, ``target``, ``target_token`` and ``is_memorized`` columns (e.g.
            ``pipeline.idiom_results``); memorized rows are marked ✓ in the list.
        k: tokens per layer.

    Returns:
        An ``ipywidgets.VBox`` (the dropdown above an HTML table); ``.children[0]`` is the
        dropdown, ``.children[1]`` the HTML widget it updates.

    """
    import ipywidgets as widgets

    if results.empty:
        raise ValueError("no probes to explore")
    rows = results.reset_index(drop=True)
    options = [(f"{'✓' if memorized else '✗'} {prompt} … {target}", index)
               for index, (prompt, target, memorized)
               in enumerate(zip(rows["prompt"], rows["target"], rows["is_memorized"],
                                strict=True))]
    memorized = np.flatnonzero(rows["is_memorized"].to_numpy(dtype=bool))
    first = int(memorized[0]) if len(memorized) else 0
    dropdown = widgets.Dropdown(options=options, value=first,
                                description=f"{lm.name}:", layout={"width": "640px"},
                                style={"description_width": "initial"})
    table = widgets.HTML()

    def show(index: int) -> None:
        row = rows.iloc[index]
        verdict_text = "memorized" if row["is_memorized"] else "not memorized"
        caption = (f"{row['prompt']!r} → target {row['target']!r} ({verdict_text}); "
                   f"top-{k} tokens per layer, target in bold")
        table.value = style_top_tokens(lm, row["prompt"], k, target=int(row["target_token"]),
                                       caption=caption).to_html()

    dropdown.observe(lambda change: show(change["new"]), names="value")
    show(first)
    return widgets.VBox([dropdown, table])


def two_step_verdict(tests: pd.DataFrame, a: str = "memorized", b: str = "non-memorized",
                     alpha: float = 0.05) -> str:
    """Whether one model's tests support the paper's two-step picture for ``a`` against ``b``.

    The picture needs both steps: ``a`` promoted significantly earlier (negative effect on
    ``promotion_layer``) and boosted significantly more (positive effect on
    ``confidence_boost``).

    Args:
        tests: :func:`group_tests` rows of one model (other pairs are ignored).
        a: the group expected to be recalled from memory.
        b: the group it is compared with.
        alpha: significance level.

    Returns:
        ``"supported"``, ``"partly supported: ..."``, ``"not supported"`` or ``"not tested: ..."``.

    """
    rows = tests[(tests["a"] == a) & (tests["b"] == b)].set_index("measure")
    if not {"promotion_layer", "confidence_boost"} <= set(rows.index):
        return "not tested: promotion layer and confidence boost tests are both needed"
    notes = [note for note in rows["note"] if note]
    if notes:
        return notes[0]
    layer, boost = rows.loc["promotion_layer"], rows.loc["confidence_boost"]
    earlier = bool(layer["p_value"] < alpha and layer["rank_biserial"] < 0)
    boosted = bool(boost["p_value"] < alpha and boost["rank_biserial"] > 0)
    if earlier and boosted:
        return "supported"
    if earlier or boosted:
        which = "promoted earlier" if earlier else "boosted more"
        other = "not boosted more" if earlier else "not promoted earlier"
        return f"partly supported: {which}, but {other}"
    return "not supported"
