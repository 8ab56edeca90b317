"""What `memrecall.project` is measured against: the authors' per-example loop, a plain forward.

Both are honest re-implementations: the same model, inputs and outputs, written the way the
paper's released code (and most logit-lens notebooks) does it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from memrecall.lens import model_inputs
from memrecall.models import LM


@torch.inference_mode()
def authors_loop(lm: LM, probes: pd.DataFrame) -> pd.DataFrame:
    """One full forward per text (LM head over every position, every hidden state kept); each
    layer's state at the prediction position through the head over the whole vocabulary; the
    softmax; ranks of the prediction and the target by a full descending sort."""
    ids, positions = model_inputs(lm, probes["prompt"].astype(str).tolist())
    rows = []
    for tokens, position, target in zip(ids, positions, probes["target_token"]):
        out = lm.model(input_ids=torch.tensor([tokens], device=lm.device),
                       output_hidden_states=True)
        layers = []
        for hidden in out.hidden_states[1:-1]:  # block outputs before the last (not normed)
            h = lm.arch.pre_unembed(hidden[0, position])
            logits = h @ lm.arch.unembed_weight.T
            if lm.arch.unembed_bias is not None:
                logits = logits + lm.arch.unembed_bias
            if lm.arch.logit_softcap:
                logits = torch.tanh(logits / lm.arch.logit_softcap) * lm.arch.logit_softcap
            layers.append(logits)
        layers.append(out.logits[0, position])  # the model's own output distribution
        logits = torch.stack(layers).float()
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
        batch = ids[start:start + batch_size]
        longest = max(map(len, batch))
        input_ids = torch.tensor([r + [pad] * (longest - len(r)) for r in batch],
                                 device=lm.device)
        mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in batch],
                            device=lm.device)
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
