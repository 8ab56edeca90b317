"""Forward passes of probe batches for the interventions, whole or resumed at a block.

A knockout in layers ``start..`` cannot change blocks before ``start``. :class:`CleanRun` records
one clean forward of a batch (every block's inputs) and then runs only blocks ``start..`` on the
recorded input of block ``start``, under whatever hooks are active: the same output as a whole
forward, for about half the work on average over a sweep's windows.

* :class:`ProbeBatch` / :func:`probe_batches`: right-padded batches of probes under the
  activation budget (:mod:`memrecall.forward.batching`), split in halves on out-of-memory
  (:func:`map_batches`);
* :func:`forward`: a whole forward of the backbone, read at the prediction positions;
* :class:`CleanRun`: trace once, resume at any block (``resume=False``: whole forwards); with
  ``norm_scales``, also the clean scales of a post-MLP norm (Gemma 2/3) that knockouts freeze;
* :func:`record_norm_scales`: those scales, recorded during any forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..forward.batching import (
    BATCH_OVERHEAD_TOKENS,
    activation_bytes,
    activation_token_budget,
    backbone_kwargs,
    halve_on_oom,
    model_inputs,
    pad_right,
    plan_batches,
)
from ..forward.hooks import (
    Call,
    capture_at_positions,
    capture_inputs_at_positions,
    forward_hooks,
    record_calls,
)
from ..models import LM
from ..models.finite import NonFiniteError, check_finite

__all__ = ["CleanRun", "ProbeBatch", "fit_copies", "forward", "map_batches", "naming_prompts",
           "probe_batches", "probe_frame", "read_out", "record_norm_scales", "target_tokens"]


# --- probes -----------------------------------------------------------------------------------

def probe_frame(probes: pd.DataFrame | Sequence[str]) -> pd.DataFrame:
    """A probe frame with a fresh index (plain prompts become a ``prompt`` column)."""
    frame = (probes.reset_index(drop=True) if isinstance(probes, pd.DataFrame)
             else pd.DataFrame({"prompt": list(probes)}))
    if "prompt" not in frame.columns:
        raise ValueError("needs a `prompt` column (use memrecall.make_probes)")
    if len(frame) == 0:
        raise ValueError("no probes")
    return frame


def target_tokens(lm: LM, frame: pd.DataFrame) -> torch.Tensor | None:
    """``(n_probes,)`` int64 target tokens on the model's device; None without the column."""
    if "target_token" not in frame.columns:
        return None
    return torch.tensor(np.array(frame["target_token"], dtype=np.int64), device=lm.device)


# --- batches ----------------------------------------------------------------------------------

@dataclass
class ProbeBatch:
    """One right-padded batch: ``rows`` index the probe frame."""

    rows: torch.Tensor  # (batch,) probe indices, on the device
    input_ids: torch.Tensor  # (batch, seq)
    attention_mask: torch.Tensor  # (batch, seq)
    positions: torch.Tensor  # (batch,) prediction positions

    def halves(self) -> list[ProbeBatch]:
        """The batch split in two (a single row cannot be split: ``[]``)."""
        if len(self.rows) < 2:
            return []
        half = len(self.rows) // 2
        return [ProbeBatch(*(t[part] for t in (self.rows, self.input_ids, self.attention_mask,
                                                 self.positions)))
                for part in (slice(None, half), slice(half, None))]


def probe_batches(lm: LM, prompts: Sequence[str], batch_size: int | None = None,
                  trace: bool = False,
                  overhead_tokens: int = BATCH_OVERHEAD_TOKENS) -> list[ProbeBatch]:
    """Padded batches under the activation budget.

    Args:
        lm: the model.
        prompts: one per probe.
        batch_size: at most this many prompts per batch (default: the budget decides).
        trace: leave room for every block's input (a :class:`CleanRun` keeps them all).
        overhead_tokens: what one more batch costs, in padded tokens
            (:func:`~memrecall.forward.plan_batches`); a sweep that reruns each batch for
            many configurations pays every padded token again each time, so it passes 1:
            one batch per prompt length.
    """
    ids, positions = model_inputs(lm, prompts)
    pad = lm.tokenizer.pad_token_id or 0
    max_tokens = activation_token_budget(lm)
    if trace:
        per_token = lm.dtype.itemsize * (lm.n_layers + 1) * lm.arch.unembed_weight.shape[1]
        max_tokens = max(64, min(max_tokens, min(map(activation_bytes, lm.devices)) // per_token))
    out = []
    for rows in plan_batches([len(r) for r in ids], max_tokens, batch_size,
                             overhead_tokens):
        input_ids, attention_mask = pad_right([ids[i] for i in rows], pad, lm.device)
        out.append(ProbeBatch(
            rows=torch.as_tensor(rows, dtype=torch.long, device=lm.device),
            input_ids=input_ids, attention_mask=attention_mask,
            positions=torch.tensor([positions[i] for i in rows], device=lm.device)))
    return out


def map_batches(lm: LM, batches: list[ProbeBatch],
                fn: Callable[[ProbeBatch], Any]) -> list[tuple[ProbeBatch, Any]]:
    """Apply ``fn`` to every batch; a batch that runs out of memory is redone in halves.

    ``batches`` is updated in place to the batches actually run, so a later pass over the same
    list starts from the halves.
    """
    out = halve_on_oom(batches, fn, ProbeBatch.halves, lm.device)
    batches[:] = [batch for batch, _ in out]
    return out


def fit_copies(lm: LM, batches: list[ProbeBatch], copies: int) -> list[ProbeBatch]:
    """The batches halved until ``copies`` copies of each fit the activation budget at once.

    A sweep runs every batch's rows once per configuration, all in flight together.
    """
    limit = activation_bytes(lm.device)
    width = lm.arch.unembed_weight.shape[1]
    out, pending = [], list(batches)
    while pending:
        batch = pending.pop(0)
        need = 4 * copies * batch.input_ids.numel() * width
        parts = batch.halves() if need > limit else []
        if parts:
            pending[:0] = parts
        else:
            out.append(batch)
    return out


# --- forwards ---------------------------------------------------------------------------------

def read_out(lm: LM, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The last block's output ``(rows, d)`` through the final norm, checked to be finite.

    Args:
        lm: the model.
        hidden: ``(rows, d)`` last-block outputs at the prediction positions.
        rows: ``(rows,)`` the probe index of each row (named in the error).

    Raises:
        NonFiniteError: a NaN or inf normed state (names the model, its dtype and the probe).
    """
    normed = lm.head.normalize(hidden)
    check_finite(lm, normed.unsqueeze(0), "normed hidden state", layers=[lm.n_layers - 1],
                 rows=rows)
    return normed


@contextmanager
def naming_prompts(prompts: Sequence[str]) -> Iterator[None]:
    """Re-raise a :class:`NonFiniteError` with the text of its probe from ``prompts``."""
    try:
        yield
    except NonFiniteError as error:
        named = error.with_prompt(prompts)
        if named is error:
            raise
        raise named from None


def forward(lm: LM, batch: ProbeBatch,
            activations: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the backbone on a batch (under whatever hooks are active).

    Returns:
        ``(batch, d)`` float32 last-block output at the prediction positions, through the final
        norm (``lm.head.normalize``); and, with ``activations``, the ``(n_layers, batch, d_ff)``
        neuron activations (inputs of ``lm.arch.mlp_out``) at the prediction positions.
    """
    modules = [lm.arch.mlp_out(layer) for layer in range(lm.n_layers)] if activations else []
    with capture_at_positions([lm.arch.blocks[-1]], batch.positions) as last, \
            capture_inputs_at_positions(modules, batch.positions) as acts:
        lm.arch.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         **backbone_kwargs(lm))
    normed = read_out(lm, last[0], batch.rows)
    return normed, (torch.stack(acts) if activations else None)


@contextmanager
def record_norm_scales(lm: LM) -> Iterator[dict[int, torch.Tensor]]:
    """Record every block's post-MLP norm scale ``1 / rms`` of its input (Gemma 2/3).

    Yields:
        ``{layer: (batch, seq, 1)}`` float32 (on the norm's device), filled during the forwards
        of the ``with`` block (each norm's last call); stays empty for a model without a norm
        after its MLP (nothing is hooked then).
    """
    arch, scales = lm.arch, {}

    def make_hook(layer: int) -> Callable:
        def hook(module, args):
            scales[layer] = arch.post_mlp_norm_scale(layer, args[0]).detach()
        return hook

    hooks = ([(arch.post_mlp_norm(layer), make_hook(layer)) for layer in range(lm.n_layers)]
             if arch.has_post_mlp_norm else [])
    with forward_hooks(hooks, pre=True):
        yield scales


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple | list) else output


def _block_input(call: Call) -> torch.Tensor:
    return call.args[0] if call.args else call.kwargs["hidden_states"]


def _take(value: Any, index: torch.Tensor, batch: int) -> Any:
    """A recorded block input for the rows ``index`` of its batch (rows may repeat).

    Tensors whose first dimension is the batch (hidden states, position embeddings, padding
    masks) are indexed; those of first dimension 1 broadcast over any batch and stay; anything
    else (cache positions, flags, None) is shared by every row.
    """
    if isinstance(value, torch.Tensor):
        if value.ndim >= 2 and value.shape[0] == batch and batch > 1:
            return value.index_select(0, index)
        return value
    if isinstance(value, tuple | list):
        return type(value)(_take(v, index, batch) for v in value)
    if isinstance(value, dict):
        return {key: _take(v, index, batch) for key, v in value.items()}
    return value


def _trace(lm: LM, batch: ProbeBatch) -> list[Call] | None:
    """A clean forward recording every block's inputs; None if the blocks are not a chain."""
    with record_calls(lm.arch.blocks) as calls:
        lm.arch.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         **backbone_kwargs(lm))
    if any(call is None for call in calls):
        return None
    for before, after in zip(calls, calls[1:]):
        previous, given = _hidden(before.output), _block_input(after)
        if previous is not given and not torch.equal(previous, given):
            return None
    for call in calls:
        call.output = None  # only the inputs are needed: free the rest
    return calls


class CleanRun:
    """A batch's clean forward, recorded so that later forwards can start at any block.

    Args:
        lm: the model.
        batch: the batch (its recorded inputs stay in memory as long as this object).
        resume: record the clean run and resume later forwards at their first changed block
            (default); False runs every forward whole. Both give the same numbers.
        norm_scales: also record the clean scales of the norm after each MLP, where the
            architecture has one (Gemma 2/3; :func:`record_norm_scales`), for knockouts that
            freeze it (:attr:`norm_scales`). Without ``resume`` this costs one clean forward.

    The recording is dropped (whole forwards instead) when the blocks do not form a simple
    chain (a block's hidden-state input is not the previous block's output).

    Attributes:
        norm_scales: ``{layer: (batch, seq, 1)}`` float32 clean scales of every post-MLP norm;
            None when not asked for or when the model has no norm after its MLP.
    """

    def __init__(self, lm: LM, batch: ProbeBatch, *, resume: bool = True,
                 norm_scales: bool = False) -> None:
        self.lm, self.batch = lm, batch
        record = norm_scales and lm.arch.has_post_mlp_norm
        with record_norm_scales(lm) if record else nullcontext({}) as scales:
            self._calls = _trace(lm, batch) if resume else None
            if record and not resume:
                forward(lm, batch)
        self.norm_scales: dict[int, torch.Tensor] | None = scales if record else None

    @property
    def resumes(self) -> bool:
        """Whether forwards resume from the recording (False: whole forwards)."""
        return self._calls is not None

    def forward_from(self, start: int) -> torch.Tensor:
        """Run blocks ``start..`` on the recorded input of block ``start`` (under active hooks).

        Blocks before ``start`` are not affected by changes at ``start`` or later, so this equals
        a whole forward (:func:`forward`), which it runs when not resuming.

        Returns:
            ``(batch, d)`` float32: the last block's output at the prediction positions, through
            the final norm.
        """
        if self._calls is None:
            return forward(self.lm, self.batch)[0]
        lm, trace = self.lm, self._calls
        hidden = _block_input(trace[start])
        for layer in range(start, lm.n_layers):
            call = trace[layer]
            if call.args:
                output = lm.arch.blocks[layer](hidden, *call.args[1:], **call.kwargs)
            else:
                output = lm.arch.blocks[layer](*call.args,
                                               **{**call.kwargs, "hidden_states": hidden})
            hidden = _hidden(output)
        where = self.batch.positions.to(hidden.device)
        rows = torch.arange(len(where), device=hidden.device)
        return read_out(lm, hidden[rows, where], self.batch.rows)

    def scales_for(self, layers: Iterable[int],
                   index: torch.Tensor) -> dict[int, torch.Tensor] | None:
        """The clean post-MLP norm scales of ``layers`` for rows ``index`` of the batch.

        Returns:
            ``{layer: (rows, seq, 1)}`` float32 (rows may repeat), for
            :func:`~memrecall.interventions.knockout.neuron_masks`; None without
            :attr:`norm_scales`.
        """
        if self.norm_scales is None:
            return None
        return {layer: self.norm_scales[layer].index_select(
            0, index.to(self.norm_scales[layer].device)) for layer in layers}

    def block_input(self, layer: int, index: torch.Tensor) -> torch.Tensor:
        """The recorded input of block ``layer`` for rows ``index`` of the batch (may repeat).

        Returns:
            ``(rows, seq, d)`` hidden states.
        """
        if self._calls is None:
            raise RuntimeError("not resuming: no recorded block inputs")
        return _block_input(self._calls[layer]).index_select(0, index)

    def run_block(self, layer: int, hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Block ``layer`` on ``hidden``, whose row ``r`` is probe ``index[r]`` of the batch.

        The block's other recorded inputs (attention masks, position embeddings) are taken for
        those rows; hooks active on the block's modules apply.

        Returns:
            ``(rows, seq, d)``: the block's output hidden states.
        """
        if self._calls is None:
            raise RuntimeError("not resuming: no recorded block inputs")
        call, size = self._calls[layer], len(self.batch.rows)
        kwargs = _take({k: v for k, v in call.kwargs.items() if k != "hidden_states"},
                       index, size)
        if call.args:
            output = self.lm.arch.blocks[layer](hidden, *_take(call.args[1:], index, size),
                                                **kwargs)
        else:
            output = self.lm.arch.blocks[layer](hidden_states=hidden, **kwargs)
        return _hidden(output)

    def readout(self, hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The last block's output at each row's prediction position, through the final norm.

        ``(rows, seq, d) -> (rows, d)`` float32; row ``r`` is probe ``index[r]`` of the batch.
        """
        rows = torch.arange(len(index), device=hidden.device)
        where = self.batch.positions.index_select(0, index).to(hidden.device)
        return read_out(self.lm, hidden[rows, where], self.batch.rows.index_select(0, index))

    def forward_rows(self, start: int, index: torch.Tensor) -> torch.Tensor:
        """Blocks ``start..`` for a batch made of rows ``index`` of this one (rows may repeat).

        Each output row ``r`` continues the clean run of probe ``index[r]`` from the recorded
        input of block ``start`` (so many configurations of the same probe share one forward,
        each with its own hooks: :func:`~memrecall.interventions.knockout.neuron_masks`). When
        not resuming, the rows' whole forwards run instead (same numbers).

        Args:
            start: the first block run (0-based).
            index: ``(rows,)`` int64 rows of :attr:`batch`, on the model's device.

        Returns:
            ``(rows, d)`` float32: the last block's output at each row's prediction position,
            through the final norm.
        """
        batch = self.batch
        if self._calls is None:
            rows = ProbeBatch(index, batch.input_ids.index_select(0, index),
                              batch.attention_mask.index_select(0, index),
                              batch.positions.index_select(0, index))
            return forward(self.lm, rows)[0]
        hidden = self.block_input(start, index)
        for layer in range(start, self.lm.n_layers):
            hidden = self.run_block(layer, hidden, index)
        return self.readout(hidden, index)
