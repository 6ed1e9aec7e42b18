"""Item and query embeddings for first-stage retrieval.

Item vectors: each chosen modality is centred (minus the mean of its real rows: pooled CNN and
sentence embeddings share a large common direction that would make every pair look similar),
L2-normalised, scaled by ``sqrt(weight)`` (weights summing to 1) and concatenated; masked rows
(a missing poster) stay zero. The inner product of two such vectors is the weighted mean of the
per-modality cosine similarities.

Query vectors from a user's history: the (optionally recency-weighted) mean of the history's
item vectors, so "more like what this user watched" is one search.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmrank.data.model import ItemFeatures
from mmrank.errors import ConfigError, DataError
from mmrank.retrieval.index import normalise_rows


def item_vectors(items: ItemFeatures, modalities: Sequence[str], weights: Sequence[float] | None = None,
                 center: bool = True) -> np.ndarray:
    """``(n_items, sum of widths)`` float32 vectors of ``items`` over ``modalities`` (see the module docstring).

    Raises:
        DataError: when a modality is missing.
        ConfigError: when the weights do not match the modalities or are not positive.
    """
    modalities = list(modalities)
    missing = [m for m in modalities if m not in items.features]
    if not modalities or missing:
        raise DataError(f"item modalities {missing or modalities} not available", hint=f"the items have {sorted(items.features)}")
    weights = np.ones(len(modalities)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(modalities),) or np.any(weights <= 0):
        raise ConfigError(f"{len(modalities)} modalities need as many positive weights, got {list(weights)}")
    weights = weights / weights.sum()
    parts = []
    for name, w in zip(modalities, weights):
        x = np.asarray(items.features[name], dtype=np.float32)
        mask = items.masks.get(name, np.ones(len(x), dtype=bool))
        if center and mask.any():
            x = x - x[mask].mean(axis=0)
        parts.append(normalise_rows(np.where(mask[:, None], x, 0.0)) * np.float32(np.sqrt(w)))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def history_vectors(vectors: np.ndarray, histories: Sequence[Sequence[int]], recency_decay: float = 1.0) -> np.ndarray:
    """One query vector per history: the weighted mean of ``vectors[rows]``, normalised.

    Args:
        vectors: ``(n_items, d)`` item vectors (rows of the index).
        histories: per query, item rows **most recent first**.
        recency_decay: weight of the i-th most recent item is ``recency_decay ** i`` (1: plain mean).

    Returns:
        ``(Q, d)`` float32; a query with an empty history gets a zero vector (it matches nothing
        in particular, and its candidates come back in index order of equal score).

    Raises:
        ConfigError: when ``recency_decay`` is not in (0, 1].
    """
    if not 0.0 < recency_decay <= 1.0:
        raise ConfigError(f"recency_decay={recency_decay} — use a value in (0, 1]")
    out = np.zeros((len(histories), vectors.shape[1]), dtype=np.float32)
    for q, rows in enumerate(histories):
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows):
            w = recency_decay ** np.arange(len(rows), dtype=np.float64)
            out[q] = (w[:, None] * vectors[rows]).sum(axis=0) / w.sum()
    return normalise_rows(out)
