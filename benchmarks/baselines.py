"""What memrecall is measured against: the authors' per-example loops, a plain forward.

All are honest re-implementations: the same model, inputs and outputs, written the way the
paper's released code (and most logit-lens notebooks) does it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from memrecall.forward.batching import model_inputs, pad_right
from memrecall.interventions import CleanRun, knockout
from memrecall.interventions.resume import probe_batches
from memrecall.lenses.projection import reference_logits
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
def per_config_sweep(lm: LM, probes: pd.DataFrame, configs: pd.DataFrame, dominant: torch.Tensor,
                     random: torch.Tensor, base_pred: torch.Tensor) -> pd.DataFrame:
    """The knockout sweep as it ran before rows were batched across configurations.

    Per batch of probes (the lens's batch plan), one recorded clean run; then for each
    configuration one forward of the batch under :func:`knockout` (each probe its own neurons;
    a post-MLP norm frozen at the recorded clean scales, as the sweep does), resumed at the
    window's first block (``CleanRun.forward_from``), and two passes of the head
    over the vocabulary (the greedy token; the rank and probability of the clean prediction and
    the target).

    Args:
        lm: the model.
        probes: ``prompt``, ``target_token``.
        configs: rows of :func:`memrecall.interventions.knockout_configs`.
        dominant: ``(n, n_layers, >= k)`` dominant neurons per probe (the sweep's).
        random: ``(n, n_layers, >= k)`` the random control's draw (the sweep's).
        base_pred: ``(n,)`` the clean predictions.

    Returns:
        One row per (configuration, probe): ``config`` (index in ``configs``), ``probe``,
        ``pred_token``, ``changed``, ``target_rank``, ``target_prob``.
    """
    batches = probe_batches(lm, probes["prompt"].astype(str).tolist(), None, trace=True)
    targets = torch.tensor(probes["target_token"].to_numpy(dtype=np.int64))
    tokens = torch.stack([base_pred, targets], 1)
    rows = []
    for batch in batches:
        clean = CleanRun(lm, batch, norm_scales=True)
        for config in configs.itertuples():
            chosen = random if config.control == "random" else dominant
            neurons = {layer: chosen[batch.rows, layer, :config.k]
                       for layer in range(config.start_layer, config.end_layer + 1)}
            with knockout(lm, neurons, complement=config.control == "non_dominant",
                          norm_scales=clean.norm_scales):
                normed = clean.forward_from(config.start_layer)
            pred, _ = lm.head.predict(normed)
            rank, prob = lm.head.rank_and_prob(normed, tokens[batch.rows])
            for j, probe in enumerate(batch.rows.tolist()):
                rows.append({"config": config.Index, "probe": probe,
                             "pred_token": int(pred[j]),
                             "changed": int(pred[j]) != int(base_pred[probe]),
                             "target_rank": int(rank[j, 1]), "target_prob": float(prob[j, 1])})
    return pd.DataFrame(rows)
