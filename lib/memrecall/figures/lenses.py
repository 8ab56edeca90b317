"""Notebook 06's figures: how well each lens reads each layer, and how the tuned lens trained."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..lenses import READINGS
from ..report.tables import to_display_layer
from .style import OKABE_ITO, SavedFigure, integer_layers, save_figure, styled

__all__ = ["LENS_STYLES", "plot_lens_kl", "plot_tuned_training"]

LENS_STYLES = {reading.label: (reading.color, reading.linestyle) for reading in READINGS}
"""Colour and line style of each lens in notebook 06's figures (each lens class carries its own)."""


@styled
def plot_lens_kl(kl: pd.DataFrame, path: str | Path, title: str) -> SavedFigure:
    """Held-out KL to the model's own output, per layer, one line per lens (log scale).

    Args:
        kl: :func:`memrecall.lenses.held_out_kl` rows of one model (``lens``, 0-based
            ``layer``, ``kl_bits``, ``se_bits``, ``n_tokens``), shown 1-based.
        path: output path without suffix.
        title: names the model.

    Returns:
        The saved figure.

    """
    fig = Figure(figsize=(5.6, 3.4), layout="constrained")
    ax = fig.subplots()
    n_layers = int(kl["layer"].max()) + 1
    for lens in dict.fromkeys(kl["lens"]):
        rows = kl[(kl["lens"] == lens) & (kl["layer"] < n_layers - 1)].sort_values("layer")
        color, style = LENS_STYLES.get(lens, (OKABE_ITO["purple"], ":"))
        x = to_display_layer(rows["layer"].to_numpy())
        ax.plot(x, rows["kl_bits"], color=color, ls=style, marker=".", ms=4, lw=1.6, label=lens,
                gid=lens)
        ax.fill_between(x, (rows["kl_bits"] - 1.96 * rows["se_bits"]).clip(lower=1e-4),
                        rows["kl_bits"] + 1.96 * rows["se_bits"], color=color, alpha=0.15,
                        lw=0)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"layer (1–{n_layers}; the last layer is the output itself: 0 bits)")
    ax.set_ylabel("KL(output ‖ lens), bits\n(held-out WikiText-2, mean ± 95% CI)")
    integer_layers(ax, n_layers)
    ax.set_title(title)
    ax.legend(title=f"{int(kl['n_tokens'].max()):,} tokens", loc="best")
    return save_figure(fig, path)


@styled
def plot_tuned_training(metas: Mapping[str, Mapping], path: str | Path) -> SavedFigure:
    """The tuned lens's training, one panel per model: objective per step, monitor KL.

    Args:
        metas: model -> the tuned lens's metadata (:meth:`memrecall.lenses.TunedLens.fit`:
            ``train_kl_bits`` per step, ``monitor`` with its checkpoint ``steps`` and exact
            ``kl_bits``), each mean over the layers.
        path: output path without suffix.

    Returns:
        The saved figure. Step 0 is the lens it started from (the linear shortcut).
    """
    fig = Figure(figsize=(3.2 * len(metas), 3.0), layout="constrained")
    axes = fig.subplots(1, len(metas), squeeze=False)[0]
    color, _ = LENS_STYLES.get("tuned lens", (OKABE_ITO["blue"], "-."))
    for ax, (model, meta) in zip(axes, metas.items(), strict=True):
        train = meta.get("train_kl_bits", [])
        ax.plot(range(len(train)), train, color=color, lw=1.0, alpha=0.6,
                label="training objective", gid="train")
        monitor = meta.get("monitor")
        if monitor:
            ax.plot(monitor["steps"], monitor["kl_bits"], color="black", marker="o", ms=4,
                    lw=1.4, label=f"held-out, exact ({monitor['n_tokens']:,} tokens)",
                    gid="monitor")
        ax.set_title(model)
        ax.set_xlabel("Adam step (0: the linear shortcut)")
        ax.set_ylabel("KL(output ‖ lens), bits\n(mean over layers)")
    axes[0].legend(loc="best", fontsize="small")
    return save_figure(fig, path)
