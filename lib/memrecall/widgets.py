"""What the lens shows for one prompt: top-k tables, and the JupyterLab explorer over many.

* :func:`layer_top_k` / :func:`layer_top_tokens`: the top-k tokens of every layer for one prompt,
  read through the same lens as :func:`memrecall.project` (block output, ``lm.head``: the model's
  own final norm / MLM head, unembedding with bias and soft-capping);
* :func:`style_top_tokens`: such a table coloured by probability, for display;
* :func:`idiom_explorer`: a dropdown over probes that shows the table of the chosen one, or a
  short note when the notebook runs unattended (``interactive=False``: papermill, ``make
  reproduce``, which set the notebooks' ``interactive`` parameter).

Tables show layers 1-based, as the figures do (:func:`memrecall.report.to_display_layer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .batching import model_inputs
from .lens import block_outputs
from .models import LM
from .report import to_display_layer

__all__ = ["BATCH_NOTE", "Note", "example_tables", "idiom_explorer", "layer_top_k",
           "layer_top_tokens", "style_top_tokens", "token_label"]

BATCH_NOTE = "Batch run: the interactive explorer is skipped (open the notebook in JupyterLab)."


@dataclass(frozen=True)
class Note:
    """A line of text that a notebook shows as it is (no quotes), in place of a widget."""

    text: str

    def __repr__(self) -> str:
        return self.text


def layer_top_k(lm: LM, prompt: str, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` token ids and probabilities of every layer at the prediction position.

    Same lens and inputs as :func:`memrecall.project` (causal LMs predict after the prompt,
    masked LMs at ``prompt + " [MASK]."``), so row ``n_layers - 1`` is the model's own output.

    Args:
        lm: a loaded model.
        prompt: one prompt (e.g. an idiom without its last word).
        k: tokens per layer.

    Returns:
        ``ids`` ``(n_layers, k)`` int64 and ``probs`` ``(n_layers, k)`` float32, best first;
        row ``i`` is (0-based) layer ``i``.

    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ids, positions = model_inputs(lm, [prompt])
    with torch.inference_mode():
        hidden = block_outputs(lm, ids, positions)[:, 0]  # (n_layers, d)
        probs = torch.softmax(lm.head.logits(lm.head.normalize(hidden)), dim=-1)
        top = probs.topk(min(k, lm.head.vocab_size), dim=-1)
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
    table.index = pd.Index(to_display_layer(np.arange(len(table))), name="layer")
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


def example_tables(lm: LM, results: pd.DataFrame, n_memorized: int = 2,
                   n_other: int = 1, k: int = 5) -> list[Any]:
    """:func:`style_top_tokens` of the first memorized and non-memorized probes, for display.

    Args:
        lm: the loaded model the results belong to.
        results: ``prompt``, ``target``, ``target_token`` and ``is_memorized`` columns.
        n_memorized: how many memorized probes (the first ones).
        n_other: how many non-memorized probes (the first ones).
        k: tokens per layer.

    Returns:
        One ``Styler`` per probe, memorized first; each caption names the model, the prompt,
        the target and whether it is memorized.

    """
    memorized = results["is_memorized"].astype(bool)
    examples = pd.concat([results[memorized].head(n_memorized), results[~memorized].head(n_other)])
    tables = []
    for _, row in examples.iterrows():
        status = "memorized" if row["is_memorized"] else "not memorized"
        tables.append(style_top_tokens(
            lm, row["prompt"], k=k, target=int(row["target_token"]),
            caption=f"{lm.name}: {row['prompt']!r} → {row['target']!r} ({status})"))
    return tables


def idiom_explorer(lm: LM, results: pd.DataFrame, k: int = 5, *, interactive: bool = True) -> Any:
    """A dropdown over probes that shows :func:`style_top_tokens` of the chosen one.

    Args:
        lm: the loaded model the results belong to.
        results: ``prompt``, ``target``, ``target_token`` and ``is_memorized`` columns (e.g.
            ``pipeline.idiom_results``); memorized rows are marked ✓ in the list.
        k: tokens per layer.
        interactive: whether someone can click (the notebooks' ``interactive`` parameter;
            ``make reproduce`` passes False). When False no widget is built.

    Returns:
        An ``ipywidgets.VBox`` (the dropdown above an HTML table; ``.children[0]`` is the
        dropdown, ``.children[1]`` the HTML widget it updates), or, when not ``interactive``,
        a :class:`Note` saying so (:data:`BATCH_NOTE`).

    """
    if results.empty:
        raise ValueError("no probes to explore")
    if not interactive:
        return Note(BATCH_NOTE)
    import ipywidgets as widgets

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
