"""Guards against NaN and inf: in weights at load time, in hidden states and logits per batch.

A NaN or inf anywhere in a lens (a weight, a normed hidden state, a logit) would otherwise read as
rank 0 (no logit is strictly larger than NaN) with NaN probabilities, silently. float16 overflows
in some models (Gemma 3 270M: NaN at 10 of its 18 layers). Every check here is one
``torch.isfinite(...).all()`` over a tensor already computed; the location is worked out only
when it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from .lm import LM

__all__ = ["NonFiniteError", "check_finite", "check_finite_weights", "dtype_advice"]


class NonFiniteError(ValueError):
    """A NaN or inf in a model's weights, a lens, a hidden state or a logit.

    Attributes:
        layer: 1-based layer where it was found first (None for weights).
        row: the first affected prompt (index into the prompts), or None.
    """

    def __init__(self, message: str, *, layer: int | None = None, row: int | None = None,
                 head: str = "", tail: str = "") -> None:
        super().__init__(message)
        self.layer, self.row = layer, row
        self._head, self._tail = head, tail

    def with_prompt(self, prompts: Sequence[str]) -> NonFiniteError:
        """The same error, its message naming the text of :attr:`row` in ``prompts``."""
        if self.row is None or not self._head or not 0 <= self.row < len(prompts):
            return self
        head = f"{self._head} ({str(prompts[self.row])[:80]!r})"
        return NonFiniteError(head + self._tail, layer=self.layer, row=self.row)


def dtype_advice(dtype: torch.dtype) -> str:
    """What to do about non-finite values computed in ``dtype``."""
    if dtype == torch.float16:
        return ("float16 overflows in some models (Gemma 3 does: NaN at most of its layers); "
                "load it with dtype='float32' or 'bfloat16'")
    if dtype == torch.bfloat16:
        return "check the model's weights and inputs, and compare with dtype='float32'"
    return "check the model's weights and its inputs"


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_finite(lm: LM, values: torch.Tensor, what: str, *, layers: Sequence[int],
                 rows: Sequence[int] | torch.Tensor | None = None,
                 prompts: Sequence[str] | None = None, where: str = "") -> None:
    """Raise :class:`NonFiniteError` if ``values`` holds a NaN or inf; else do nothing.

    Args:
        lm: the model (named in the message with its dtype).
        values: ``(len(layers), batch, ...)``: per layer, per row.
        what: what the values are ("normed hidden state", "logit").
        layers: the 0-based layer of each leading entry of ``values``.
        rows: the prompt index of each row (default: the row itself).
        prompts: every prompt, indexed by ``rows``, to quote the first affected one.
        where: more context for the message (e.g. the knockout configuration).
    """
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return
    bad = (~finite).reshape(finite.shape[0], finite.shape[1], -1).any(-1).cpu()  # (L, batch)
    layer_bad = bad.any(1)
    first = int(torch.nonzero(layer_bad)[0, 0])
    column = int(torch.nonzero(bad[first])[0, 0])
    row = int(rows[column]) if rows is not None else column
    nan = bool(torch.isnan(values[first, column]).any())
    layer = int(layers[first]) + 1
    count = int(layer_bad.sum())
    affected = f"; {count} of {len(layers)} layers affected" if len(layers) > 1 else ""
    head = (f"{lm.name} ({_short(lm.dtype)}): {'NaN' if nan else 'inf'} {what} at layer "
            f"{layer} (1-based, of {lm.n_layers}{affected}){where}, first at prompt {row}")
    tail = f"; {dtype_advice(lm.dtype)}"
    error = NonFiniteError(head + tail, layer=layer, row=row, head=head, tail=tail)
    raise error.with_prompt(prompts) if prompts is not None else error


def check_finite_weights(model: PreTrainedModel, source: str) -> None:
    """Refuse a model with a NaN or inf in any weight or buffer, naming the first tensor.

    Tensors not in memory (``meta``: offloaded under a device map) are skipped.
    """
    advice = (dtype_advice(torch.float16) if next(model.parameters()).dtype == torch.float16
              else "the weights are damaged (a corrupted file, a diverged fine-tune)")
    for name, tensor in model.named_parameters():
        if not tensor.is_floating_point() or tensor.device.type == "meta":
            continue
        if not bool(torch.isfinite(tensor).all()):
            kind = "NaN" if bool(torch.isnan(tensor).any()) else "inf"
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(
                f"{source}: weight tensor {name!r} {tuple(tensor.shape)} holds {bad} {kind} "
                f"value(s) ({_short(tensor.dtype)}); refusing to load a model whose numbers "
                f"would all be NaN or read as rank 0; {advice}")
