"""Helpers every list loss shares: masking padded slots the same way everywhere.

Convention for all losses here: ``scores (B, L)`` float, ``labels (B, L)`` float (graded
relevance), ``mask (B, L)`` bool, True where a slot holds a real candidate. Padded slots may hold
anything; the helpers make sure they contribute nothing.
"""

from __future__ import annotations

import torch

# A large negative number rather than -inf: -inf - -inf = nan inside logsumexp/cumsum tricks.
NEG = -1e9


def masked_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores with padded slots pushed to ``NEG`` so they sort last and add ~0 to exp-sums."""
    return scores.masked_fill(~mask, NEG)


def query_mean(per_query: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over queries that count (``valid (B,)`` bool); 0 with a live graph when none do."""
    valid = valid.to(per_query.dtype)
    return (per_query * valid).sum() / valid.sum().clamp_min(1.0)
