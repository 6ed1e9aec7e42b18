"""Contrastive sequence training (CL4SRec / DuoRec style) added to a next-item loss.

CL4SRec (Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022): two
augmented views of every training window (one augmentation per view, drawn from crop / mask /
reorder; CoSeRec's correlated ``substitute`` too), encoded by the same transformer; the states after
the last position of the two views are pulled together and pushed away from the other windows of
the batch with InfoNCE (``mmrank.losses.infonce``: cosine similarity, temperature ``cl_temperature``).
DuoRec (Qiu et al., WSDM 2022) uses the model's own dropout as the augmentation: ``dropout`` in
``cl_augmentations`` leaves a view's input as it is, so two such views differ by their dropout masks.

The total loss is ``next-item loss + cl_weight * InfoNCE``; CL4SRec's default weight is 0.1.
"""

from __future__ import annotations

from typing import Callable

import torch

from mmrank.losses.infonce import infonce_loss
from mmrank.sequential.augment import random_view


def contrastive_loss(net, inputs: torch.Tensor, params, table: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE between the last states of two augmented views of ``inputs (B, L)`` (the training
    windows, left-padded); ``params`` holds ``cl_augmentations``, the ratios and ``cl_temperature``."""
    ratios = {"crop": params.cl_crop, "mask": params.cl_mask, "reorder": params.cl_reorder,
              "substitute": params.cl_substitute}
    kinds = list(params.cl_augmentations)
    views = [random_view(inputs, kinds, ratios, table) for _ in range(2)]
    z1, z2 = (net.encode(seq, real)[:, -1] for seq, real in views)
    return infonce_loss(z1, z2, temperature=params.cl_temperature)


def with_contrastive(net, rec_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], params,
                     table: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(inputs, targets) = rec_loss + cl_weight * contrastive_loss``; the item side (e.g. a
    content tower) is computed once for both terms."""

    def loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with net.item_side_cache():
            return rec_loss(inputs, targets) + params.cl_weight * contrastive_loss(net, inputs, params, table)

    return loss


__all__ = ["contrastive_loss", "with_contrastive"]
