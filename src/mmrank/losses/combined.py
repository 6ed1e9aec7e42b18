"""The seeds' default training objective: ``w_listmle · ListMLE + w_focal · Focal``.

ListMLE orders the list (Xia et al., ICML 2008); the focal term (Lin et al., ICCV 2017) keeps the
raw scores meaningful as relevance logits, which calibration and thresholds rely on. Scores are
divided by ``temperature`` first (a fixed softening; CoTRR also learns its own).
Defaults 0.7 / 0.3 as in the seed; every weight is configurable.
"""

from __future__ import annotations

import torch

from mmrank.losses.focal import focal_loss
from mmrank.losses.listmle import listmle_loss


def combined_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    w_listmle: float = 0.7,
    w_focal: float = 0.3,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
    alpha: float = 0.25,
    relevance_threshold: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Shapes: ``scores (B, L)``, ``labels (B, L)``, ``mask (B, L)`` bool. Returns a scalar."""
    s = scores / temperature
    total = s.new_zeros(())
    if w_listmle:
        total = total + w_listmle * listmle_loss(s, labels, mask, generator=generator)
    if w_focal:
        total = total + w_focal * focal_loss(
            s, labels, mask, gamma=gamma, alpha=alpha,
            relevance_threshold=relevance_threshold, label_smoothing=label_smoothing,
        )
    return total
