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
    """The default objective ``w_listmle · ListMLE(s / T) + w_focal · Focal(s / T)``.

    ListMLE alone fixes only the order of scores, not their level; the focal term anchors them as
    relevance logits so calibration and thresholds stay meaningful. A weight of 0 skips its term
    entirely (it is not computed).

    Args:
        scores: (B, L) float model scores.
        labels: (B, L) graded relevance.
        mask: (B, L) bool, True for real candidates.
        w_listmle: weight of :func:`listmle_loss`.
        w_focal: weight of :func:`focal_loss`.
        temperature: fixed divisor of the scores before both terms.
        label_smoothing: passed to the focal term.
        gamma: focal focusing exponent.
        alpha: focal weight of relevant candidates.
        relevance_threshold: smallest label the focal term counts as relevant.
        generator: RNG for ListMLE's random tie-breaking.

    Returns:
        A scalar tensor, differentiable in ``scores``.

    Example:
        >>> import torch
        >>> s, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
        >>> round(float(combined_loss(s, y, torch.tensor([[True, True, False]]))), 4)
        0.2202
    """
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
