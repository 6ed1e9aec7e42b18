"""ListMLE: the Plackett-Luce likelihood of the label order.

Xia, Liu, Wang, Zhang, Li. "Listwise approach to learning to rank: theory and algorithm", ICML
2008. For one query with candidates permuted into a label-descending order ``π``,

    loss = Σ_i [ log Σ_{j >= i} exp(s_{π_j}) − s_{π_i} ]

Ties among equal labels are broken at random on every call (allRank does the same), so no
arbitrary input order is learned as if it were a preference.
"""

from __future__ import annotations

import torch

from mmrank.losses._common import masked_scores, query_mean


def listmle_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean ListMLE over queries: how unlikely the label order is under a Plackett-Luce model.

    Padded slots are moved behind every real one and excluded from every normaliser. Ties among
    equal labels are broken at random on each call, drawn from ``generator``, so pass a seeded one
    for reproducible training. A query with one real candidate adds exactly 0; queries with none are
    left out of the mean.

    Args:
        scores: (B, L) float model scores.
        labels: (B, L) graded relevance; only their order within a query matters.
        mask: (B, L) bool, True for real candidates.
        generator: torch RNG for the tie-breaking shuffle; None uses the global one.

    Returns:
        A scalar tensor (nats per query), differentiable in ``scores``.

    Example:
        >>> import torch
        >>> s, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
        >>> round(float(listmle_loss(s, y, torch.tensor([[True, True, False]]))), 4)  # log(1 + e^-1)
        0.3133
    """
    mask = mask.bool()
    # Random tie-breaking: shuffle the slots, then a *stable* sort by label keeps the shuffle
    # among equal labels. Padded slots get label -inf so they go last.
    perm = torch.argsort(torch.rand(scores.shape, generator=generator, device=scores.device), dim=1)
    s = masked_scores(scores, mask).gather(1, perm)
    y = labels.masked_fill(~mask, float("-inf")).gather(1, perm)
    m = mask.gather(1, perm)
    order = torch.sort(y, dim=1, descending=True, stable=True).indices
    s = s.gather(1, order)
    m = m.gather(1, order)
    # log Σ_{j>=i} exp(s_j) as a reversed cumulative logsumexp; padded slots sit at the end with
    # NEG scores, so they add exp(NEG) = 0 to every real position's normaliser.
    tail_lse = torch.logcumsumexp(s.flip(1), dim=1).flip(1)
    terms = (tail_lse - s) * m
    per_query = terms.sum(dim=1)
    return query_mean(per_query, m.sum(dim=1) > 0)


