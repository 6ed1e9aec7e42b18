"""Sequence augmentations for contrastive training of sequential recommenders.

Every function takes a batch of **left-padded** windows ``seq (B, L)`` (0 = padding, the most recent
item in the last column, as ``pad_left`` builds them) and returns a new ``(B, L)`` batch, right-aligned
again, plus ``real (B, L)`` saying which positions hold an item the model reads (a masked item is
real but has id 0: it reads as the zero "mask" embedding at its position).

* ``crop`` (CL4SRec, Xie et al., ICDE 2022): a random contiguous sub-sequence of ``ceil(eta * n)``
  items.
* ``mask`` (CL4SRec): ``floor(gamma * n)`` random items replaced by the mask embedding.
* ``reorder`` (CL4SRec): a random contiguous sub-sequence of ``floor(beta * n)`` items shuffled.
* ``substitute`` (CoSeRec, Liu et al., 2021): ``floor(rho * n)`` random items replaced by their most
  correlated item (``substitute_table``: the item that most often follows or precedes it in the
  training histories).

``n`` is the number of real items of the row; rows with fewer than 2 items are left as they are.
All randomness comes from ``generator`` (a ``torch.Generator``), so a seeded run augments alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch

AUGMENTATIONS = ("crop", "mask", "reorder", "substitute")


def _lengths(seq: torch.Tensor) -> torch.Tensor:
    return (seq > 0).sum(1)


def _right_align(rows: list[torch.Tensor], width: int, like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros((len(rows), width), dtype=like.dtype, device=like.device)
    for r, items in enumerate(rows):
        if len(items):
            out[r, width - len(items):] = items[-width:]
    return out


def crop(seq: torch.Tensor, eta: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random contiguous sub-sequence of ``max(1, ceil(eta * n))`` items per row."""
    rows = []
    for r, n in enumerate(_lengths(seq).tolist()):
        items = seq[r, seq.shape[1] - n:]
        keep = max(1, math.ceil(eta * n))
        start = int(torch.randint(0, n - keep + 1, (1,), generator=generator)) if n > keep else 0
        rows.append(items[start:start + keep])
    out = _right_align(rows, seq.shape[1], seq)
    return out, out > 0


def mask(seq: torch.Tensor, gamma: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``floor(gamma * n)`` random real items per row read as the mask embedding (id 0, still real)."""
    real = seq > 0
    out = seq.clone()
    scores = torch.rand(seq.shape, generator=generator, device=seq.device).masked_fill(~real, 2.0)
    k = torch.floor(gamma * _lengths(seq).float()).long()
    ranks = scores.argsort(1).argsort(1)  # rank of each position among the row's random scores
    hide = (ranks < k[:, None]) & real
    out[hide] = 0
    return out, real


def reorder(seq: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random contiguous sub-sequence of ``floor(beta * n)`` items shuffled, per row."""
    out = seq.clone()
    L = seq.shape[1]
    for r, n in enumerate(_lengths(seq).tolist()):
        k = int(math.floor(beta * n))
        if k < 2:
            continue
        start = L - n + int(torch.randint(0, n - k + 1, (1,), generator=generator))
        perm = torch.randperm(k, generator=generator, device=seq.device)
        out[r, start:start + k] = seq[r, start:start + k][perm]
    return out, out > 0


def substitute(seq: torch.Tensor, rho: float, table: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``floor(rho * n)`` random real items per row replaced by ``table[item]`` (their most
    correlated item; an item without one maps to itself)."""
    real = seq > 0
    scores = torch.rand(seq.shape, generator=generator, device=seq.device).masked_fill(~real, 2.0)
    k = torch.floor(rho * _lengths(seq).float()).long()
    swap = (scores.argsort(1).argsort(1) < k[:, None]) & real
    return torch.where(swap, table[seq], seq), real


def substitute_table(histories, n_items: int) -> torch.Tensor:
    """``(n_items+1,)`` item -> the item that most often follows or precedes it in ``histories``
    (itself when it has no neighbour); entry 0 stays 0."""
    pairs = []
    for u in range(histories.n_users):
        h = histories.of(u)
        if len(h) > 1:
            pairs.append(np.stack([h[:-1], h[1:]], 1))
    table = np.arange(n_items + 1, dtype=np.int64)
    if not pairs:
        return torch.from_numpy(table)
    p = np.concatenate(pairs)
    p = np.concatenate([p, p[:, ::-1]])  # both directions
    p = p[p[:, 0] != p[:, 1]]
    if len(p) == 0:
        return torch.from_numpy(table)
    keys, counts = np.unique(p, axis=0, return_counts=True)
    # Per source item the neighbour with the highest count (ties: the smallest id, np.lexsort is stable).
    order = np.lexsort((keys[:, 1], -counts, keys[:, 0]))
    keys = keys[order]
    first = np.concatenate([[True], keys[1:, 0] != keys[:-1, 0]])
    table[keys[first, 0]] = keys[first, 1]
    return torch.from_numpy(table)


def augment(seq: torch.Tensor, kind: str, ratios: dict[str, float], table: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One named augmentation of a batch (``ratios``: ``crop``/``mask``/``reorder``/``substitute``
    ratios; ``table`` is needed for ``substitute``)."""
    if kind == "crop":
        return crop(seq, ratios["crop"], generator)
    if kind == "mask":
        return mask(seq, ratios["mask"], generator)
    if kind == "reorder":
        return reorder(seq, ratios["reorder"], generator)
    if kind == "substitute":
        if table is None:
            raise ValueError("substitute needs the item correlation table (substitute_table)")
        return substitute(seq, ratios["substitute"], table, generator)
    raise ValueError(f"unknown augmentation {kind!r}; use one of {AUGMENTATIONS}")


def random_view(seq: torch.Tensor, kinds: list[str], ratios: dict[str, float], table: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A view of the batch where each row gets one augmentation drawn uniformly from ``kinds``
    (CL4SRec draws one per view). ``dropout`` in ``kinds`` means the row is left as it is (DuoRec's
    model-level augmentation: the two views then differ by their dropout masks only)."""
    pick = torch.randint(0, len(kinds), (seq.shape[0],), generator=generator)
    out, real = seq.clone(), seq > 0
    for j, kind in enumerate(kinds):
        rows = torch.nonzero(pick == j).flatten()
        if len(rows) == 0 or kind == "dropout":
            continue
        aug, aug_real = augment(seq[rows], kind, ratios, table, generator)
        out[rows], real[rows] = aug, aug_real
    return out, real


__all__ = ["AUGMENTATIONS", "augment", "crop", "mask", "random_view", "reorder", "substitute", "substitute_table"]
