"""Reweight any reranker's scores with a user's preference weights, at serving time.

    personalised = z(score) + beta * mean over the candidate's attributes of w_user

``z`` standardises the scores within the query (so one ``beta`` fits any reranker's score
scale); a candidate with none of the attributes gets no boost. It is a handful of vector
operations per query (no model call): near-zero latency, measured in BENCHMARKS.md. ``beta`` is
chosen on validation queries by ``tune_beta`` (0 is in the grid: when personalisation does not
help there, it is switched off).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmrank.metrics import ndcg_at_k

BETA_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def standardise_per_query(scores: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(N,)`` scores minus their query's mean, over their query's std (1 where the std is 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.diff(offsets)
    qi = np.repeat(np.arange(len(sizes)), sizes)
    n = np.maximum(sizes, 1)
    mean = np.bincount(qi, weights=scores, minlength=len(sizes)) / n
    var = np.bincount(qi, weights=(scores - mean[qi]) ** 2, minlength=len(sizes)) / n
    std = np.sqrt(var)
    return (scores - mean[qi]) / np.where(std > 0, std, 1.0)[qi]


def personal_boost(attributes: np.ndarray, weights: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(N,)`` mean preference weight of each candidate's attributes for its query's user
    (``attributes (N, A)`` 0/1, ``weights (Q, A)``); 0 for a candidate with no attribute."""
    qi = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    attributes = np.asarray(attributes, dtype=np.float64)
    total = (attributes * np.asarray(weights, dtype=np.float64)[qi]).sum(axis=1)
    return total / np.maximum(attributes.sum(axis=1), 1.0)


def personalised_scores(scores: np.ndarray, offsets: np.ndarray, attributes: np.ndarray, weights: np.ndarray,
                        beta: float) -> np.ndarray:
    """The reweighted ``(N,)`` scores (module docstring); ``beta = 0`` keeps the reranker's order."""
    return standardise_per_query(scores, offsets) + beta * personal_boost(attributes, weights, offsets)


def tune_beta(labels: np.ndarray, scores: np.ndarray, offsets: np.ndarray, attributes: np.ndarray, weights: np.ndarray,
              grid: Sequence[float] = BETA_GRID, k: int = 10) -> tuple[float, dict[float, float]]:
    """The ``beta`` of ``grid`` with the best mean nDCG@k on these (validation) queries, and the
    mean nDCG@k of every grid point; ties go to the smaller beta."""
    z = standardise_per_query(scores, offsets)
    boost = personal_boost(attributes, weights, offsets)
    table = {float(b): float(ndcg_at_k(labels, z + b * boost, offsets, k).mean()) for b in grid}
    best = max(sorted(table), key=lambda b: (round(table[b], 12), -b))
    return best, table
