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
    """Mean over queries of the mean pair loss.

    Shapes: ``scores (B, L)``, ``labels (B, L)``, ``mask (B, L)`` bool; pairs are formed as a
    ``(B, L, L)`` tensor and any pair touching a padded slot is masked out. Queries without a
    single ordered pair contribute nothing. Returns a scalar.
    """
    mask = mask.bool()
    diff = scores[:, :, None] - scores[:, None, :]
    better = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    pair_loss = F.softplus(-sigma * diff) * better
    n_pairs = better.sum(dim=(1, 2))
    per_query = pair_loss.sum(dim=(1, 2)) / n_pairs.clamp_min(1)
    return query_mean(per_query, n_pairs > 0)
