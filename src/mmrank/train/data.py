"""Data loaders over query groups: one item = one query, batches padded on demand.

The training sampler is a ``DistributedSampler`` in every case (``num_replicas=1`` in a single
process): its shuffle depends only on ``(seed, epoch)``, which is what makes a resumed run and a
``torchrun`` run see the same order as an uninterrupted single-process one.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class QueryIndices(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class PadBatch:
    """collate_fn: query indices → padded batch dict (``x``, ``mask``, ``labels``, ``rows``)."""

    def __init__(self, data, max_len: int | None, seed: int) -> None:
        self.data, self.max_len, self.seed = data, max_len, seed

    def __call__(self, indices: list[int]) -> dict:
        qidx = np.asarray(indices, dtype=np.int64)
        # Long lists are subsampled with an rng derived from the batch itself: reproducible
        # without touching global RNG state.
        rng = np.random.default_rng([self.seed, *qidx[:8].tolist()]) if self.max_len else None
        return self.data.batch(qidx, self.max_len, rng)


def train_loader(data, batch_queries: int, max_len: int | None, seed: int, world_size: int, rank: int) -> DataLoader:
    """Shuffled query batches whose order depends only on (seed, epoch): the same for a
    resumed, a torchrun and an uninterrupted run. Lists longer than ``max_len`` are subsampled.
    """
    sampler = DistributedSampler(QueryIndices(len(data)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    return DataLoader(QueryIndices(len(data)), batch_size=batch_queries, sampler=sampler, collate_fn=PadBatch(data, max_len, seed))


def eval_loader(data, batch_queries: int) -> DataLoader:
    # Every process scores the whole validation set: validation metrics are then identical on
    # every rank with no gather, and equal to a single-process run's.
    """Query batches in order, every query once (validation and scoring)."""
    return DataLoader(QueryIndices(len(data)), batch_size=batch_queries, shuffle=False, collate_fn=PadBatch(data, None, 0))
