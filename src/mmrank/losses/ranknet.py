"""RankNet: pairwise logistic loss over every pair with different labels.

Burges et al. "Learning to Rank using Gradient Descent", ICML 2005. For each pair (i, j) with
``y_i > y_j`` in one query: ``loss_ij = log(1 + exp(−σ (s_i − s_j)))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmrank.losses._common import query_mean


def ranknet_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, *, sigma: float = 1.0
) -> torch.Tensor:
    """Mean over queries of the mean RankNet pair loss ``log(1 + exp(−σ (s_i − s_j)))``.

    Every pair with ``y_i > y_j`` counts once, equally weighted (no metric weighting; see
    ``lambdaloss`` for that). Pairs are a ``(B, L, L)`` tensor, so memory grows with ``L²``; any pair
    touching a padded slot is masked out. Queries without a single ordered pair (all labels equal)
    are left out of the mean.

    Args:
        scores: (B, L) float model scores.
        labels: (B, L) graded relevance.
        mask: (B, L) bool, True for real candidates.
        sigma: slope of the logistic; larger makes the loss sharper around ``s_i = s_j``.

    Returns:
        A scalar tensor (nats per pair), differentiable in ``scores``.

    Example:
        >>> import torch
        >>> s, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
        >>> round(float(ranknet_loss(s, y, torch.tensor([[True, True, False]]))), 4)  # softplus(-1)
        0.3133
    """
    mask = mask.bool()
    diff = scores[:, :, None] - scores[:, None, :]
    better = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    pair_loss = F.softplus(-sigma * diff) * better
    n_pairs = better.sum(dim=(1, 2))
    per_query = pair_loss.sum(dim=(1, 2)) / n_pairs.clamp_min(1)
    return query_mean(per_query, n_pairs > 0)
