"""The linear shortcut (Din, Karidi, Choshen, Geva 2023, "Jump to Conclusions").

For every layer ``l`` an affine map fitted by least squares so that ``h_l + h_l A_l^T + b_l``
approximates the last layer's block output ``h_L`` on ordinary text; the result is read through
the model's own final norm and unembedding. We fit the residual ``h_L - h_l`` (so ridge shrinks
``A_l`` towards 0, i.e. towards the logit lens, not towards a zero map) with an unpenalised
offset, from the normal equations accumulated batch by batch in float64: memory is
``2 (n_layers - 1) d^2`` numbers however many tokens are used.
"""

from __future__ import annotations

import time

import torch

from ..models import LM
from .affine import AffineLens, fit_meta
from .text import TextChunks, hidden_batches

__all__ = ["DEFAULT_RIDGE", "LinearShortcut", "NormalEquations"]

# Ridge penalty relative to the mean variance of the inputs (scale-free): small enough to leave a
# well-determined fit alone, large enough to keep directions the data barely spans near 0.
DEFAULT_RIDGE = 1e-3


class NormalEquations:
    """Running sums for ``groups`` independent affine least-squares fits ``y ~ x A^T + b``.

    Args:
        groups: number of independent fits (one per layer).
        d_in, d_out: widths of ``x`` and ``y``.
        device: where the float64 sums live.
    """

    def __init__(self, groups: int, d_in: int, d_out: int,
                 device: torch.device | str = "cpu") -> None:
        kw = dict(dtype=torch.float64, device=device)
        self.n = 0
        self.sum_x = torch.zeros(groups, d_in, **kw)
        self.sum_y = torch.zeros(groups, d_out, **kw)
        self.xtx = torch.zeros(groups, d_in, d_in, **kw)
        self.xty = torch.zeros(groups, d_in, d_out, **kw)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add samples: ``x`` is ``(groups, rows, d_in)``, ``y`` is ``(groups, rows, d_out)``."""
        self.n += x.shape[1]
        for group in range(len(self.xtx)):  # one group at a time: bounded float64 copies
            xg, yg = x[group].to(self.xtx), y[group].to(self.xtx)
            self.sum_x[group] += xg.sum(0)
            self.sum_y[group] += yg.sum(0)
            self.xtx[group] += xg.T @ xg
            self.xty[group] += xg.T @ yg

    def solve(self, ridge: float = DEFAULT_RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
        """Ridge solution on centred data: float64 ``(groups, d_out, d_in)``, ``(groups, d_out)``.

        Returns the matrices ``A`` and offsets ``b`` of ``y ~ x A^T + b``. The penalty is
        ``ridge`` times the mean variance of ``x`` (per group); the offset is not penalised.
        """
        if self.n < 2:
            raise ValueError(f"need at least 2 samples, got {self.n}")
        mean_x, mean_y = self.sum_x / self.n, self.sum_y / self.n
        cov = self.xtx / self.n - mean_x.unsqueeze(2) * mean_x.unsqueeze(1)
        cross = self.xty / self.n - mean_x.unsqueeze(2) * mean_y.unsqueeze(1)
        d_in = cov.shape[-1]
        scale = cov.diagonal(dim1=1, dim2=2).mean(1).clamp_min(torch.finfo(cov.dtype).tiny)
        eye = torch.eye(d_in, dtype=cov.dtype, device=cov.device)
        coef = torch.linalg.solve(cov + (ridge * scale)[:, None, None] * eye, cross)
        offset = mean_y - (mean_x.unsqueeze(1) @ coef).squeeze(1)
        return coef.transpose(1, 2), offset


class LinearShortcut(AffineLens):
    """Linear shortcut lens (Din et al. 2023): ``h_l -> h_l + h_l A_l^T + b_l``.

    ``A_l, b_l`` by least squares towards the last layer's block output. Fit with :meth:`fit`.
    """

    kind = "linear_shortcut"
    label = "linear shortcut"
    short = "shortcut"
    color = "#E69F00"  # Okabe-Ito orange
    linestyle = "--"

    @classmethod
    def fit(cls, lm: LM, chunks: TextChunks, *, ridge: float = DEFAULT_RIDGE,
            batch_chunks: int | None = None) -> LinearShortcut:
        """Fit on the block outputs of ``chunks`` (one pass; float64 normal equations).

        Args:
            lm: the model.
            chunks: ordinary text (:func:`memrecall.lenses.wikitext_chunks`, ``split="valid"``).
            ridge: penalty relative to the mean variance of each layer's block outputs.
            batch_chunks: chunks per forward pass (default: from the activation budget).
        """
        started = time.perf_counter()
        width = lm.arch.unembed_weight.shape[1]
        sums = NormalEquations(lm.n_layers - 1, width, width, device=lm.device)
        for hidden in hidden_batches(lm, chunks, batch_chunks):
            sums.add(hidden[:-1], hidden[-1:] - hidden[:-1])
        weight, bias = sums.solve(ridge)
        meta = fit_meta(lm, chunks, {"ridge": ridge}, seed=chunks.seed,
                        seconds=time.perf_counter() - started)
        return cls(weight.float(), bias.float(), meta)

