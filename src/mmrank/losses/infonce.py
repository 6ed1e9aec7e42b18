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
    """Symmetric InfoNCE between paired rows.

    Shapes: ``a (M, d)``, ``b (M, d)``, optional ``mask (M,)`` bool selecting the real rows (a
    padded ``(B, L, d)`` pair can be flattened with its ``(B, L)`` mask). Fewer than two real
    rows give 0 (no negatives to contrast with). Returns a scalar.
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
