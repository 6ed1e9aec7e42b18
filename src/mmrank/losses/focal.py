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
    """Mean focal loss over all real candidates of the batch (pointwise; queries are not weighed).

    The target is binary, ``label >= relevance_threshold``; the ``(1 − p_t)^γ`` factor shrinks the
    loss of candidates that are already classified well, so training focuses on hard ones. Computed
    from ``logsigmoid`` for numerical stability at large ``|scores|``.

    Args:
        scores: (B, L) float logits.
        labels: (B, L) graded relevance.
        mask: (B, L) bool, True for real candidates.
        gamma: focusing exponent γ; 0 gives α-weighted binary cross-entropy.
        alpha: weight α of relevant candidates (``1 − α`` for the others).
        relevance_threshold: smallest label that counts as relevant.
        label_smoothing: ε; maps targets {0, 1} to {ε/2, 1 − ε/2}.

    Returns:
        A scalar tensor (nats per candidate); 0 for a batch without real candidates.

    Example:
        >>> import torch
        >>> s, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
        >>> round(float(focal_loss(s, y, torch.tensor([[True, True, False]]))), 4)
        0.0031
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
