"""What memrecall is measured against: the authors' per-example loops, a plain forward.

All are honest re-implementations: the same model, inputs and outputs, written the way the
paper's released code (and most logit-lens notebooks) does it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from memrecall.batching import model_inputs, pad_right
from memrecall.interventions import knockout, value_vectors
from memrecall.lens import reference_logits
from memrecall.models import LM


@torch.inference_mode()
def authors_loop(lm: LM, probes: pd.DataFrame) -> pd.DataFrame:
    """One full forward per text (LM head over every position, every hidden state kept); each
    layer's state at the prediction position through the head over the whole vocabulary; the
    softmax; ranks of the prediction and the target by a full descending sort."""
    rows = []
    for prompt, target in zip(probes["prompt"].astype(str), probes["target_token"]):
        logits = reference_logits(lm, prompt)
        probs = torch.softmax(logits, dim=-1)
        order = torch.argsort(logits, dim=-1, descending=True)
        pred = int(order[-1, 0])
        rank_of = order.argsort(dim=-1)  # position of each token in each layer's sorted order
        rows.append({
            "pred_token": pred,
            "pred_rank": rank_of[:, pred].cpu().numpy(),
            "pred_prob": probs[:, pred].cpu().numpy(),
            "target_rank": rank_of[:, int(target)].cpu().numpy(),
            "target_prob": probs[:, int(target)].cpu().numpy(),
        })
    return pd.DataFrame(rows)


@torch.inference_mode()
def plain_forward(lm: LM, prompts: list[str], batch_size: int = 64) -> None:
    """The backbone alone (no head, no lens), fixed-size right-padded batches in input order."""
    ids, _ = model_inputs(lm, prompts)
    pad = lm.tokenizer.pad_token_id or 0
    kwargs = {} if lm.is_masked else {"use_cache": False}
    for start in range(0, len(ids), batch_size):
        input_ids, mask = pad_right(ids[start:start + batch_size], pad, lm.device)
        lm.arch.backbone(input_ids=input_ids, attention_mask=mask, **kwargs)


def padded_tokens(lm: LM, prompts: list[str], batch_size: int = 64) -> int:
    """Tokens :func:`plain_forward` computes, padding included."""
    ids, _ = model_inputs(lm, prompts)
    return sum(len(ids[s:s + batch_size]) * max(map(len, ids[s:s + batch_size]))
               for s in range(0, len(ids), batch_size))


def agreement(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict:
    """How far ``project`` and the authors' loop agree on the same texts."""
    out = {"texts": len(theirs),
           "pred_token_equal": float(np.mean(ours["pred_token"].to_numpy()
                                             == theirs["pred_token"].to_numpy()))}
    for column in ("pred_rank", "target_rank"):
        a, b = np.stack(ours[column]), np.stack(theirs[column])
        out[f"{column}_equal"] = float(np.mean(a == b))
        out[f"{column}_max_abs_diff"] = int(np.abs(a - b).max())
    for column in ("pred_prob", "target_prob"):
        a, b = np.stack(ours[column]), np.stack(theirs[column])
        out[f"{column}_max_abs_diff"] = float(np.abs(a - b).max())
    return out


@torch.inference_mode()
def authors_top_neurons(lm: LM, probes: pd.DataFrame, k: int) -> tuple[list[int], torch.Tensor]:
    """One full forward per probe: its greedy prediction and its ``(n, n_layers, k)`` top
    neurons by ``|m_i| * ||v_i||`` at the prediction position (pre-hooks on the MLP outputs)."""
    ids, positions = model_inputs(lm, probes["prompt"].astype(str).tolist())
    norms = [value_vectors(lm, layer).float().norm(dim=1) for layer in range(lm.n_layers)]
    acts: list[torch.Tensor | None] = [None] * lm.n_layers

    def record(layer: int) -> Callable:
        return lambda module, args: acts.__setitem__(layer, args[0][0])

    preds, top = [], []
    handles = [lm.arch.mlp_out(layer).register_forward_pre_hook(record(layer))
               for layer in range(lm.n_layers)]
    try:
        for tokens, position in zip(ids, positions):
            logits = lm.model(input_ids=torch.tensor([tokens], device=lm.device)).logits
            preds.append(int(logits[0, position].argmax()))
            top.append(torch.stack([(acts[layer][position].float().abs() * norms[layer])
                                    .topk(k).indices for layer in range(lm.n_layers)]))
    finally:
        for handle in handles:
            handle.remove()
    return preds, torch.stack(top)


@torch.inference_mode()
def authors_knockouts(lm: LM, probes: pd.DataFrame, configs: pd.DataFrame, base: list[int],
                      top: torch.Tensor, random: torch.Tensor) -> pd.DataFrame:
    """For each configuration and each probe: one unbatched full forward (LM head over every
    position) under :func:`knockout` with that probe's neurons; the last position's argmax.

    ``top`` / ``random``: ``(n, n_layers, >= k)`` neuron indices per probe (``"top"`` /
    ``"random"`` control); ``base``: the clean predictions. One row per (configuration, probe).
    """
    ids, positions = model_inputs(lm, probes["prompt"].astype(str).tolist())
    rows = []
    for config in configs.itertuples():
        chosen = random if config.control == "random" else top
        for probe, (tokens, position) in enumerate(zip(ids, positions)):
            neurons = {layer: chosen[probe, layer, :config.k]
                       for layer in range(config.start_layer, config.end_layer + 1)}
            with knockout(lm, neurons, scope="all",
                          complement=config.control == "all_but_top"):
                logits = lm.model(input_ids=torch.tensor([tokens], device=lm.device)).logits
            pred = int(logits[0, position].argmax())
            rows.append({"config": config.Index, "probe": probe, "pred_token": pred,
                         "changed": pred != base[probe]})
    return pd.DataFrame(rows)
