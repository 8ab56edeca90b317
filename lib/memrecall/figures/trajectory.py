"""One text through the lens: its top tokens at every layer, and its prediction's and target's path.

* :func:`memrecall.lenses.layer_top_k`: the top-k tokens of every layer for one prompt,
  read through the same lens as :func:`memrecall.project` (block output, ``lm.head``: the model's
  own final norm / MLM head, unembedding with bias and soft-capping);
* :func:`trajectory`: any text split as the analysis splits it (:func:`memrecall.make_probes`:
  the target is the last word's first sub-token), the rank and probability of the model's
  prediction and of the target at every layer (:func:`memrecall.project`, so exactly the numbers
  of the figures), and the top-k table;
* :class:`Trajectory`: that result; it draws itself as one picture (the top-k table shaded by
  probability, the target boxed and in bold, next to the rank and probability curves) and shows
  as a PNG in a notebook, so a rendered, untrusted copy shows it as it was (no HTML styling to
  lose to JupyterLab's sanitizer or GitHub's).

Layers are shown 1-based, as in every figure (:func:`memrecall.report.to_display_layer`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .._io import atomic_write_all
from ..analysis.projection import promotion_layer
from ..lenses import Lens, LogitLens, layer_logits, top_k_tokens
from ..models import LM
from ..probes import make_probes
from ..report.tables import to_display_layer
from .style import OKABE_ITO, PNG_DPI, STYLE

__all__ = ["Trajectory", "draw_panels", "drawable", "drawing", "token_label", "trajectory"]

PREDICTION_COLOR = OKABE_ITO["blue"]
TARGET_COLOR = OKABE_ITO["vermillion"]
TRACK_COLOR = OKABE_ITO["green"]
CELL_CHARS = 12  # a top-k cell shows this much of a token (escapes make some long)


def token_label(tokenizer: Any, token: int) -> str:
    """A token as text with visible leading/trailing spaces (``"␣eye"``)."""
    text = tokenizer.decode([int(token)])
    stripped = text.strip(" ")
    lead, trail = len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))
    if not stripped:
        return "␣" * len(text) if text else repr(text)
    return "␣" * lead + stripped.replace("\n", "\\n") + "␣" * trail


@lru_cache(maxsize=4)
def _covered(families: tuple[str, ...]) -> frozenset[int]:
    """The code points that the first font found for ``families`` (or DejaVu Sans) can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=list(families)))
    return frozenset(FT2Font(path).get_charmap())


def drawable(label: str, limit: int | None = None) -> str:
    r"""``label`` with the characters the figures' font lacks written as ``\u4e00`` escapes.

    Matplotlib would draw them as empty boxes ("tofu"); an escape says which token it is.
    With ``limit``, a longer result is cut to ``limit`` characters ending in "…" (a table cell).
    """
    with mpl.rc_context(STYLE):
        covered = _covered(tuple(mpl.rcParams["font.family"]))
    pieces = [ch if ord(ch) in covered or ch in " \n"
              else (f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
              for ch in label]
    if limit is None or sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    kept = ""
    for piece in pieces:  # whole characters and whole escapes only
        if len(kept) + len(piece) > limit - 1:
            break
        kept += piece
    return kept + "…"


def _top_table(lm: LM, ids: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    cells = [[f"{token_label(lm.tokenizer, t)} ({p:.2f})" for t, p in zip(row, prow, strict=True)]
             for row, prow in zip(ids, probs, strict=True)]
    table = pd.DataFrame(cells, columns=[f"top {j + 1}" for j in range(ids.shape[1])])
    table.index = pd.Index(to_display_layer(np.arange(len(table))), name="layer")
    return table


@dataclass(frozen=True)
class Trajectory:
    """One text through the lens of one model (:func:`trajectory`).

    Attributes:
        model: the model's name.
        lens: the lens's name (:class:`~memrecall.lenses.LogitLens`'s label by default).
        text, prompt, target: the text and its split (the target is the last word).
        target_token, pred_token: token ids (the prediction is the model's greedy next token).
        is_memorized: whether the model predicts the target (``pred_token == target_token``).
        curves: one row per layer (index ``layer``, 1-based): ``pred_rank``, ``pred_prob``,
            ``target_rank``, ``target_prob`` (rank 0 = top-1).
        top_ids, top_probs: ``(n_layers, k)`` top tokens of every layer, best first.
        table: the same as text, ``"token (probability)"`` cells (:func:`layer_top_tokens`).
        top_labels: ``(n_layers, k)`` the tokens of ``table`` without their probabilities.
        pred_label, target_label: the prediction and the target as :func:`token_label` shows them.
        track_token, track_label: a token of one's own followed like the target (``curves``
            then has ``track_rank`` and ``track_prob``), or None.
        idiom: whether the text is a known idiom (IdioMem): its verdict says "memorized";
            for any other text, "predicted".
    """

    model: str
    lens: str
    text: str
    prompt: str
    target: str
    target_token: int
    pred_token: int
    is_memorized: bool
    curves: pd.DataFrame
    top_ids: np.ndarray
    top_probs: np.ndarray
    table: pd.DataFrame
    top_labels: np.ndarray
    pred_label: str
    target_label: str
    track_token: int | None = None
    track_label: str | None = None
    idiom: bool = True

    @property
    def n_layers(self) -> int:
        """Layers of the model (rows of the table)."""
        return len(self.curves)

    @property
    def promotion_layer(self) -> int:
        """The 1-based layer from which the prediction stays top-1 (:mod:`memrecall.analysis`)."""
        return int(to_display_layer(promotion_layer([self.curves["pred_rank"].to_numpy()])[0]))

    @property
    def verdict(self) -> str:
        """The verdict: "memorized" / "not memorized" for an idiom, else "(not) predicted".

        Memorization is defined on IdioMem only; any other text is predicted or not.
        """
        word = "memorized" if self.idiom else "predicted"
        return word if self.is_memorized else f"not {word}"

    @property
    def title(self) -> str:
        """What the picture shows, in one line."""
        verdict = self.verdict
        if not self.is_memorized:
            verdict += f": predicts {self.pred_label}"
        return (f"{self.model} ({self.lens}): {self.prompt!r} → target {self.target_label} "
                f"({verdict})")

    def frame(self) -> pd.DataFrame:
        """The per-layer table behind the picture (for CSV): one row per layer (1-based)."""
        out = self.curves.copy()
        for j in range(self.top_ids.shape[1]):
            out[f"top{j + 1}_token"] = [str(label) for label in self.top_labels[:, j]]
            out[f"top{j + 1}_prob"] = self.top_probs[:, j]
        meta = {"model": self.model, "lens": self.lens, "text": self.text, "prompt": self.prompt,
                "target": self.target_label, "prediction": self.pred_label,
                "tracked": self.track_label or ""}
        return out.assign(**meta).reset_index()

    def figure(self) -> Figure:
        """The picture: top-k table (shade = probability, target boxed) beside the curves.

        Rows line up across the three panels: layer 1 at the top, the model's output at the
        bottom. The rank axis is logarithmic above 1 (0 = top-1, drawn on a linear stretch).
        """
        with drawing():
            return _draw(self)

    def png(self) -> bytes:
        """The picture as PNG bytes."""
        buffer = io.BytesIO()
        with drawing():
            _draw(self).savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the picture as ``<path>.png`` and ``<path>.pdf``; returns the PNG's path.

        Each file is written whole or not at all.
        """
        base = Path(path)
        if base.suffix in (".png", ".pdf"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        png = base.with_name(base.name + ".png")
        with drawing():
            figure = _draw(self)
            atomic_write_all({
                png: lambda out: figure.savefig(out, format="png", dpi=PNG_DPI,
                                                metadata={"Software": None}),
                base.with_name(base.name + ".pdf"): lambda out: figure.savefig(
                    out, format="pdf", metadata={"CreationDate": None})})
        return png

    def _repr_png_(self) -> bytes:
        return self.png()


def trajectory(lm: LM, text: str, k: int = 5, lens: Lens | None = None,
               lens_name: str | None = None, track: str | None = None,
               idiom: bool = True) -> Trajectory:
    """Split ``text`` as the analysis does and follow its prediction and target through the layers.

    Any text works, in IdioMem or not: the target is the first sub-token of its last word
    (:func:`memrecall.make_probes`). Ranks and probabilities follow :func:`memrecall.project`'s
    definitions (rank 0 = top-1, ties in the token's favour; softmax over the vocabulary), from
    one forward pass that also gives the top-k table.

    Args:
        lm: a loaded model.
        text: an idiom or any text of at least two words.
        k: tokens per layer in the table.
        lens: None for the logit lens, or a fitted lens (see :func:`layer_logits`).
        lens_name: the lens's name for titles (default the logit lens's label when ``lens`` is
            None, else the lens's ``label`` or class name).
        track: a token of one's own to follow (its first sub-token, as typed: ``" moon"`` with
            its space), or None.
        idiom: whether ``text`` is a known idiom (the verdict's wording, see :class:`Trajectory`).

    Raises:
        memrecall.data.DataFormatError: ``text`` is empty or has a single word.
        ValueError: ``k`` < 1, or ``track`` makes no token.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    track_token = None
    if track:
        ids = lm.tokenizer.encode(track, add_special_tokens=False)
        if not ids:
            raise ValueError(f"{track!r} makes no token for {lm.name}")
        track_token = int(ids[0])
    probe = make_probes([text], lm).iloc[0]
    logits = layer_logits(lm, probe["prompt"], lens)  # (n_layers, vocab)
    probs = torch.softmax(logits, dim=-1)
    pred_token, target_token = int(logits[-1].argmax()), int(probe["target_token"])
    curves = {}
    followed = [("pred", pred_token), ("target", target_token)]
    if track_token is not None:
        followed.append(("track", track_token))
    for name, token in followed:
        # rank = how many tokens score strictly higher (ties in the token's favour), as project
        curves[f"{name}_rank"] = (logits > logits[:, token : token + 1]).sum(-1).cpu().numpy()
        curves[f"{name}_prob"] = probs[:, token].cpu().numpy()
    ids, top_probs = top_k_tokens(probs, k)
    layers = pd.Index(to_display_layer(np.arange(lm.n_layers)), name="layer")
    labels = np.vectorize(lambda token: token_label(lm.tokenizer, token), otypes=[object])(ids)
    if lens_name is None:
        lens_name = LogitLens.label if lens is None else getattr(lens, "label", type(lens).__name__)
    return Trajectory(
        model=lm.name, lens=lens_name, text=probe["text"], prompt=probe["prompt"],
        target=probe["target"], target_token=target_token, pred_token=pred_token,
        is_memorized=pred_token == target_token, curves=pd.DataFrame(curves, index=layers),
        top_ids=ids, top_probs=top_probs, table=_top_table(lm, ids, top_probs),
        top_labels=labels, pred_label=token_label(lm.tokenizer, pred_token),
        target_label=token_label(lm.tokenizer, target_token), track_token=track_token,
        track_label=None if track_token is None else token_label(lm.tokenizer, track_token),
        idiom=idiom)


# --------------------------------------------------------------------------- drawing


def _rank_tick(value: float, _position: int) -> str:
    return f"{value:,.0f}" if value < 1e5 else f"$10^{{{np.log10(value):.0f}}}$"


@contextmanager
def drawing() -> Iterator[None]:
    """The house style, and no warning per token that the font cannot draw (CJK, Thai...)."""
    with mpl.rc_context(STYLE), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        yield


def _plain(text: str) -> str:
    """``text`` with its dollar signs escaped (a legend would read them as mathtext)."""
    return text.replace("$", r"\$")


def _draw(view: Trajectory) -> Figure:
    n_layers, k = view.top_ids.shape
    figure = Figure(figsize=(1.25 * k + 4.4, 1.3 + 0.24 * n_layers), layout="constrained")
    grid = figure.add_gridspec(1, 1)
    prob = draw_panels(figure, grid[0], view, n_layers)[-1]
    figure.legend(*prob.get_legend_handles_labels(), loc="outside lower center",
                  ncols=3 if view.track_token is not None else 2)
    figure.suptitle(view.title, fontsize=10, x=0.01, ha="left", parse_math=False)
    return figure


def draw_panels(figure: Figure, cell: Any, view: Trajectory, n_rows: int,
                share: Any = None) -> list[Any]:
    """Draw ``view``'s table, rank and probability panels into ``cell`` of ``figure``.

    Args:
        figure: the figure to draw on.
        cell: a gridspec cell (``grid[0]``) that the three panels split.
        view: what to draw.
        n_rows: layers the y axis spans (the larger model's count when two share an axis).
        share: an axes whose y axis the panels share (None: the table's own).

    Returns:
        The table, rank and probability axes.
    """
    n_layers, k = view.top_ids.shape
    grid = cell.subgridspec(1, 3, width_ratios=[1.25 * k, 2.0, 2.0])
    table = figure.add_subplot(grid[0], sharey=share)
    rank = figure.add_subplot(grid[1], sharey=table)
    prob = figure.add_subplot(grid[2], sharey=table)

    layers = view.curves.index.to_numpy()
    cmap = mpl.colormaps["Blues"]
    table.imshow(view.top_probs, cmap=cmap, vmin=0, vmax=1, aspect="auto",
                 extent=(0.5, k + 0.5, layers[-1] + 0.5, layers[0] - 0.5))
    for row, layer in enumerate(layers):
        for col in range(k):
            p = float(view.top_probs[row, col])
            is_target = int(view.top_ids[row, col]) == view.target_token
            label = drawable(str(view.top_labels[row, col]), CELL_CHARS)
            table.text(col + 1, layer, f"{label} {p:.2f}",
                       ha="center", va="center", fontsize=7, parse_math=False, clip_on=True,
                       color="white" if p > 0.55 else "black",
                       fontweight="bold" if is_target else "normal")
            if is_target:  # a box in the target's colour, with a white edge inside it: visible
                for colour, inset, width in ((TARGET_COLOR, 0.04, 2.2), ("white", 0.11, 0.8)):
                    table.add_patch(Rectangle((col + 0.5 + inset, layer - 0.5 + inset),
                                              1 - 2 * inset, 1 - 2 * inset, fill=False,
                                              edgecolor=colour, linewidth=width))
    table.set_xlim(0.5, k + 0.5)
    table.set_ylim(layers[0] - 0.5 + n_rows, layers[0] - 0.5)
    table.set_xticks(range(1, k + 1), [f"top {j}" for j in range(1, k + 1)])
    table.xaxis.tick_top()
    table.tick_params(length=0)
    table.grid(False)
    table.set_ylabel("layer")
    ticks = np.arange(layers[0], layers[0] + n_rows)
    table.set_yticks(ticks if n_rows <= 40 else ticks[::5])
    table.set_title(f"top {k} tokens (shade = probability; target boxed, bold)", fontsize=9,
                    loc="left")

    curves = view.curves
    lines = [("pred", PREDICTION_COLOR, "o", "-", f"prediction {drawable(view.pred_label)}"),
             ("target", TARGET_COLOR, "s", "--", f"target {drawable(view.target_label)}"
              + (" (= prediction)" if view.is_memorized else ""))]
    if view.track_token is not None:
        lines.append(("track", TRACK_COLOR, "^", ":",
                      f"tracked {drawable(view.track_label or '')}"))
    for panel, column, label in ((rank, "rank", "rank (0 = top-1, log scale)"),
                                 (prob, "prob", "probability")):
        for name, colour, marker, style, legend in lines:
            panel.plot(curves[f"{name}_{column}"], layers, color=colour, marker=marker,
                       markersize=3, linewidth=1.5, linestyle=style, label=_plain(legend))
        panel.set_xlabel(label)
        panel.tick_params(labelleft=False)
    prob.set_xlim(-0.02, 1.02)
    ranks = [c for c in curves.columns if c.endswith("_rank")]
    top = max(10.0, 2 * float(curves[ranks].to_numpy().max()))
    rank.set_xscale("symlog", linthresh=1, linscale=0.5)
    rank.set_xlim(-0.05, top)
    rank.xaxis.set_major_locator(FixedLocator([0] + [10**e for e in range(int(np.log10(top)) + 1)
                                                     if e % 2 == 0 or top < 1e4]))
    rank.xaxis.set_minor_locator(NullLocator())
    rank.xaxis.set_major_formatter(FuncFormatter(_rank_tick))
    rank.set_title("rank and probability by layer", fontsize=9, loc="left")
    return [table, rank, prob]
