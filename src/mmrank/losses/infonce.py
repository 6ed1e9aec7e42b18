"""InfoNCE: contrastive alignment of two views of the same items.

van den Oord, Li, Vinyals. "Representation Learning with Contrastive Predictive Coding", 2018;
the symmetric form is CLIP's (Radford et al. 2021). Row i of ``a`` and row i of ``b`` are a
positive pair; every other row of the batch is a negative:

    loss = ½ [ CE(sim(a, b) / τ, diag) + CE(sim(b, a) / τ, diag) ],  sim = cosine
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infonce_loss(
    a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, *, temperature: float = 0.1
) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows: row i of ``a`` should be closest to row i of ``b``.

    Rows are L2-normalised, so similarities are cosines; every other real row of the batch is a
    negative. Fewer than two real rows give a zero that is still attached to the graph (no
    negatives to contrast with, and ``backward()`` keeps working).

    Args:
        a: (M, d) embeddings of one view, or (B, L, d) together with ``mask``.
        b: (M, d) embeddings of the other view, same shape as ``a``.
        mask: optional (M,) or (B, L) bool selecting the real rows.
        temperature: τ dividing the cosines; smaller makes the softmax sharper.

    Returns:
        A scalar tensor (nats), differentiable in ``a`` and ``b``.

    Example:
        >>> import torch
        >>> round(float(infonce_loss(torch.eye(3), torch.eye(3))), 4)
        0.0001
    """
    if mask is not None:
        mask = mask.bool().reshape(-1)
        a, b = a.reshape(-1, a.shape[-1])[mask], b.reshape(-1, b.shape[-1])[mask]
    if a.shape[0] < 2:
        return a.sum() * 0.0 + b.sum() * 0.0
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
