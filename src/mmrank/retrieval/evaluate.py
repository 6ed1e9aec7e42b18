"""How good a first stage is, and what the whole retrieve → rerank pipeline delivers.

* ``recall_at_k``: per query, the share of its targets (relevant items, label > 0) that made it
  into the candidate list — what no reranker can recover later.
* ``end_to_end_ndcg``: nDCG@k of a ranked candidate list **against all of the query's targets**,
  retrieved or not: the ideal DCG counts the targets the first stage missed (they can never earn
  gain), so a first stage that loses relevant items pays for it. (nDCG over the candidate list
  alone would reward a first stage that retrieves nothing relevant: such a query counts 1.)
* ``overlap_at_k``: ANN vs exact — the share of the exact top k an approximate index returns.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mmrank.data.model import RankingSet
from mmrank.metrics import ndcg_at_k


def recall_at_k(rset: RankingSet, targets: Sequence[Mapping[str, float]], k: int | None = None) -> np.ndarray:
    """(Q,) share of each query's targets among its first ``k`` candidates in list order
    (None: all); NaN for a query without targets."""
    out = np.full(rset.n_queries, np.nan)
    for q in range(rset.n_queries):
        relevant = {i for i, label in targets[q].items() if label > 0}
        if relevant:
            shown = set(rset.candidate_ids[rset.offsets[q]:rset.offsets[q + 1]][:k].tolist())
            out[q] = len(relevant & shown) / len(relevant)
    return out


def _ideal_dcg(labels: list[float], k: int) -> float:
    """IDCG@k with mmrank's default convention (gain 2^l − 1, discount 1/log2(rank + 1))."""
    top = np.sort(np.asarray(labels, dtype=np.float64))[::-1][:k]
    return float(np.sum((2.0**top - 1.0) / np.log2(np.arange(2, len(top) + 2))))


def end_to_end_ndcg(rset: RankingSet, scores: np.ndarray, targets: Sequence[Mapping[str, float]], k: int = 10) -> np.ndarray:
    """(Q,) nDCG@k of ``scores`` over ``rset``'s candidates, its ideal DCG taken over **all** of
    each query's targets (see the module docstring); labels come from ``targets``.

    Computed as the list's own nDCG@k times ``IDCG(list) / IDCG(all targets)``: the missed
    targets raise the ideal but can never earn gain. A query with no target at all gets 1.0
    (any order is ideal), as ``mmrank.metrics`` counts it by default."""
    labels = np.array([float(targets[q].get(i, 0.0)) for q in range(rset.n_queries)
                       for i in rset.candidate_ids[rset.offsets[q]:rset.offsets[q + 1]].tolist()])
    within = ndcg_at_k(labels, np.asarray(scores, dtype=np.float64), rset.offsets, k)
    out = np.ones(rset.n_queries)
    for q in range(rset.n_queries):
        ideal_all = _ideal_dcg([v for v in targets[q].values() if v > 0], k)
        if ideal_all > 0:
            ideal_list = _ideal_dcg(labels[rset.offsets[q]:rset.offsets[q + 1]].tolist(), k)
            out[q] = within[q] * ideal_list / ideal_all if ideal_list > 0 else 0.0
    return out


def list_order_scores(rset: RankingSet) -> np.ndarray:
    """(N,) scores that rank each query's candidates in the order they are listed."""
    return -(np.arange(rset.n_candidates) - np.repeat(rset.offsets[:-1], rset.group_sizes)).astype(np.float64)


def overlap_at_k(approximate: np.ndarray, exact: np.ndarray, k: int) -> np.ndarray:
    """(Q,) ``|approximate top k ∩ exact top k| / k`` per query (rows of ``(Q, >= k)`` item indices)."""
    return np.array([len(set(a[:k].tolist()) & set(e[:k].tolist())) / k for a, e in zip(approximate, exact)])
