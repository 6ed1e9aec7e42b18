"""Generated rerank data with a known answer, shared by the reranker tests."""

from __future__ import annotations

import numpy as np

from mmrank.data.model import RankingSet


def known_function_set(n_queries: int, per_query: int = 20, seed: int = 0) -> RankingSet:
    """Labels are a known function of ONE modality: grade = [image·w > 0] + [image·w > 1].
    The text modality and the query text embedding are noise with respect to the labels."""
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    image = rng.normal(size=(n, 8))
    signal = image @ np.array([1.0, -0.5, 0.5, 0, 0, 0, 0, 0])
    labels = (signal > 0).astype(int) + (signal > 1).astype(int)
    return RankingSet(
        query_ids=[f"q{seed}-{i}" for i in range(n_queries)],
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"c{j}" for j in range(n)],
        labels=labels,
        features={"image": image, "text": rng.normal(size=(n, 6)), "meta": rng.normal(size=(n, 3))},
        query_features={"text": rng.normal(size=(n_queries, 6))},
    )
