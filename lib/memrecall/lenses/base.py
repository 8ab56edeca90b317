"""The lens contract: how each layer's block output is read, and what a reading is called.

Every reader of a lens (:func:`memrecall.lenses.project`, :func:`memrecall.lenses.layer_logits`,
:func:`memrecall.lenses.held_out_kl`) calls :meth:`Lens.check` against the model first, so no
model is ever read through another model's lens. Each lens class carries its own name
(``label`` for people, ``short`` for tables such as ``claims.csv``) and its line style, so
figures and tables derive them from the class instead of listing them again.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..models import LM

__all__ = ["Lens", "LogitLens"]


class Lens(Protocol):
    """A way of reading each layer: block outputs moved (or not) before the model's own head.

    :meth:`transform` maps ``(n_layers, rows, d)`` block outputs to states of the same shape,
    which the final norm and unembedding then read; it returns the last layer unchanged, so the
    last layer stays the model's own output distribution under every lens. :meth:`check` refuses
    a model the lens was not made for. The fitted lenses are in :mod:`memrecall.lenses`.
    """

    label: str
    short: str
    color: str
    linestyle: str

    def check(self, lm: LM) -> None:
        """Raise if this lens cannot read ``lm``."""

    def cache_key(self) -> dict[str, str]:
        """What identifies this lens in a results-cache key."""

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(n_layers, rows, d)`` block outputs -> what the head reads, same shape."""


class LogitLens:
    """The logit lens (the default): every block output read as it is."""

    label = "logit lens"
    short = "logit"
    color = "#000000"
    linestyle = "-"

    def __repr__(self) -> str:
        return "LogitLens()"

    def check(self, lm: LM) -> None:
        """Any model can be read this way."""

    def cache_key(self) -> dict[str, str]:
        """Nothing: results under the logit lens are the ones :func:`project` always gave."""
        return {}

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """The block outputs themselves (the same tensor)."""
        return hidden
