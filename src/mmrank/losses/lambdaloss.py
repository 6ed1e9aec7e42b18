"""LambdaLoss with the NDCG-Loss2++ weighting, cut at k (a metric-driven pairwise loss).

Wang, Li, Golbandi, Bendersky, Najork. "The LambdaLoss Framework for Ranking Metric
Optimization", CIKM 2018 (allRank's ``lambdaLoss(..., weighing_scheme="ndcgLoss2PP_scheme")``).
For pairs (i, j) with ``y_i > y_j``, ranked by the current scores at ranks r_i, r_j:

    w_ij = |G_i − G_j| · (ρ_ij + μ δ_ij) / IDCG,   G = 2^y − 1,
    δ_ij = |1/log2(1+|r_i−r_j|) − 1/log2(2+|r_i−r_j|)|,   ρ_ij = |D(r_i) − D(r_j)| with D = 1/log2(1+r)
    loss = − Σ w_ij · log2 σ(s_i − s_j)

Only pairs where at least one candidate is in the top k (by current score) count.
"""

from __future__ import annotations

import torch

from mmrank.losses._common import masked_scores, query_mean


def lambdaloss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    k: int | None = 10,
    mu: float = 10.0,
    sigma: float = 1.0,
    eps: float = 1e-10,
) -> torch.Tensor:
    """Mean over queries of the LambdaLoss NDCG-Loss2++ pair sum (see the module docstring).

    Ranks come from the current scores (detached) and the pair weights are detached too, so the
    gradient flows only through ``log2 σ(σ (s_i − s_j))``, as in allRank. Pairs are a ``(B, L, L)``
    tensor (memory grows with ``L²``); pairs touching padded slots are masked. A pair counts when
    at least one of its two candidates is in the current top ``k``. Queries without a counted pair
    are left out of the mean.

    Args:
        scores: (B, L) float model scores.
        labels: (B, L) graded relevance; gains are ``2^y − 1``.
        mask: (B, L) bool, True for real candidates.
        k: rank cut-off; None (or >= L) uses the whole list.
        mu: weight of the NDCG-Loss2 term δ against the LambdaRank term ρ (the paper's μ).
        sigma: slope of the pairwise logistic.
        eps: floor for IDCG and for σ before the log, so all-zero-gain queries and saturated pairs
            stay finite.

    Returns:
        A scalar tensor, differentiable in ``scores``.

    Example:
        >>> import torch
        >>> s, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
        >>> round(float(lambdaloss(s, y, torch.tensor([[True, True, False]]))), 4)
        1.0106
    """
    mask = mask.bool()
    B, L = scores.shape
    k = L if k is None else min(int(k), L)
    s = masked_scores(scores, mask)
    y = labels.masked_fill(~mask, 0.0)
    # Ranks (1-based) under the current scores; padded slots sit at the end by construction.
    order = torch.argsort(s.detach(), dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, L + 1, device=s.device).expand(B, L))
    ranks = ranks.to(s.dtype)
    gains = torch.pow(2.0, y) - 1.0
    ideal = torch.sort(gains, dim=1, descending=True).values[:, :k]
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, device=s.device, dtype=s.dtype))
    idcg = (ideal * discounts).sum(dim=1).clamp_min(eps)

    d_rank = 1.0 / torch.log2(ranks + 1.0)
    rank_gap = (ranks[:, :, None] - ranks[:, None, :]).abs()
    delta = (1.0 / torch.log2(1.0 + rank_gap.clamp_min(1.0)) - 1.0 / torch.log2(2.0 + rank_gap)).abs()
    rho = (d_rank[:, :, None] - d_rank[:, None, :]).abs()
    weight = (gains[:, :, None] - gains[:, None, :]).abs() * (rho + mu * delta) / idcg[:, None, None]

    in_top_k = ranks <= k
    pairs = (
        (y[:, :, None] > y[:, None, :])
        & mask[:, :, None] & mask[:, None, :]
        & (in_top_k[:, :, None] | in_top_k[:, None, :])
    )
    diff = (s[:, :, None] - s[:, None, :]).clamp(-1e4, 1e4)
    log2_sig = torch.log2(torch.sigmoid(sigma * diff).clamp_min(eps))
    per_query = -(weight.detach() * log2_sig * pairs).sum(dim=(1, 2))
    return query_mean(per_query, pairs.flatten(1).any(dim=1))
