"""What the classifier of Table 5 reads from the model itself: final hidden states, token ids.

Two of the paper's feature sets are not per-layer lens outputs: the final hidden state at the
prediction position, and the token ids of the input. Both are computed here, from the model, so
that :mod:`memrecall.analysis.classifier` stays a pure function of arrays.

The final hidden state is the last block's output at the prediction position passed through the
model's final norm (for BERT, the MLM transform): the vector the unembedding reads, i.e. what
HF's last ``hidden_states`` entry holds for GPT-2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ..models import LM
from .batching import (
    activation_token_budget,
    backbone_kwargs,
    halve_on_oom,
    halves,
    model_inputs,
    pad_right,
    plan_batches,
)
from .hooks import capture_at_positions

__all__ = ["block_outputs", "final_hidden_states", "model_features", "prompt_token_ids"]


def block_outputs(lm: LM, ids: list[list[int]], positions: list[int]) -> torch.Tensor:
    """Run the backbone on one batch; ``(n_layers, batch, d)`` block outputs at ``positions``."""
    input_ids, attention_mask = pad_right(ids, lm.tokenizer.pad_token_id or 0, lm.device)
    where = torch.tensor(positions, device=lm.device)
    with capture_at_positions(lm.arch.blocks, where) as captured:
        lm.arch.backbone(input_ids=input_ids, attention_mask=attention_mask,
                         **backbone_kwargs(lm))
    return torch.stack(captured)



def _prompts(probes: pd.DataFrame | Sequence[str]) -> list[str]:
    return probes["prompt"].tolist() if isinstance(probes, pd.DataFrame) else list(probes)


@torch.inference_mode()
def final_hidden_states(lm: LM, probes: pd.DataFrame | Sequence[str],
                        batch_size: int | None = None) -> np.ndarray:
    """``(n, d)`` float32 final (normed) hidden states at each prompt's prediction position.

    Args:
        lm: a loaded model.
        probes: :func:`memrecall.make_probes` output (its ``prompt`` column) or plain prompts.
        batch_size: at most this many prompts per forward pass (default: what memory allows,
            :func:`~memrecall.forward.batching.plan_batches`). On out-of-memory a batch is
            halved and retried (:func:`~memrecall.forward.batching.halve_on_oom`).
    """
    ids, positions = model_inputs(lm, _prompts(probes))
    out: list[np.ndarray] = []  # the (n, d) result, allocated by the first batch

    def run(rows: np.ndarray) -> None:
        hidden = block_outputs(lm, [ids[i] for i in rows], [positions[i] for i in rows])[-1]
        normed = lm.head.normalize(hidden).float().cpu().numpy()
        if not out:
            out.append(np.zeros((len(ids), normed.shape[-1]), dtype=np.float32))
        out[0][rows] = normed

    batches = plan_batches([len(r) for r in ids], activation_token_budget(lm), batch_size)
    halve_on_oom(batches, run, halves, lm.device)
    return out[0] if out else np.zeros((0, 0), dtype=np.float32)


def prompt_token_ids(lm: LM, probes: pd.DataFrame | Sequence[str]) -> np.ndarray:
    """``(n, longest)`` token ids the model reads, right-padded with -1 (the "token ids" set)."""
    ids, _ = model_inputs(lm, _prompts(probes))
    out = np.full((len(ids), max(len(r) for r in ids)), -1, dtype=np.int64)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
    return out


def model_features(lm: LM, probes: pd.DataFrame | Sequence[str],
                   batch_size: int | None = None) -> dict[str, np.ndarray]:
    """The two model-side feature sets: ``hidden`` and ``token_ids``.

    Keyed as :func:`memrecall.analysis.classifier.feature_sets` takes them
    (``**model_features(...)``).
    """
    return {"hidden": final_hidden_states(lm, probes, batch_size),
            "token_ids": prompt_token_ids(lm, probes)}
