"""Focal loss on candidate relevance: a pointwise term that focuses on hard candidates.

Lin, Goyal, Girshick, He, Dollár. "Focal Loss for Dense Object Detection", ICCV 2017.
For a probability ``p = σ(s)`` and a binary target ``t`` (relevant = label >= threshold),

    loss = −α_t (1 − p_t)^γ log p_t,   p_t = p if t else 1 − p,  α_t = α if t else 1 − α

Soft targets (label smoothing) are supported: ``t`` in [0, 1] weighs both terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float = 0.25,
    relevance_threshold: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean focal loss over real candidates.

    Shapes: ``scores (B, L)`` logits, ``labels (B, L)`` graded, ``mask (B, L)`` bool.
    ``label_smoothing`` ε maps targets {0, 1} to {ε/2, 1 − ε/2}. Returns a scalar.
    """
    mask = mask.bool()
    target = (labels >= relevance_threshold).to(scores.dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    log_p = F.logsigmoid(scores)
    log_1mp = F.logsigmoid(-scores)
    p = log_p.exp()
    pos = -alpha * (1.0 - p).pow(gamma) * log_p
    neg = -(1.0 - alpha) * p.pow(gamma) * log_1mp
    per_item = target * pos + (1.0 - target) * neg
    per_item = per_item.masked_fill(~mask, 0.0)
    return per_item.sum() / mask.sum().clamp_min(1)
