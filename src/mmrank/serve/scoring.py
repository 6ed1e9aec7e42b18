"""Run a ranker on the top-M candidates of one or more queries and turn whatever happens into
one ``ModelOutput`` per query — scores, or a fault code — never an exception.

A fault in a multi-query call (an exception, the wrong number of scores) is retried query by
query, so one query the model chokes on falls back alone and its neighbours are still reranked.
"""

from __future__ import annotations

import numpy as np

from mmrank.data.model import RankingSet
from mmrank.serve.reorder import MODEL_ERROR, ModelOutput


def supports_uncertainty(ranker) -> bool:
    """True when the ranker has MC-dropout ``score_with_uncertainty``."""
    return callable(getattr(ranker, "score_with_uncertainty", None))


def score_queries(ranker, rset: RankingSet, mc_passes: int = 0) -> list[ModelOutput]:
    """One ModelOutput per query of ``rset``. With ``mc_passes > 0`` and a ranker that has
    ``score_with_uncertainty`` (MC dropout), the mean scores come with their stds.
    Shapes are not judged here: ``reorder.decide`` names a wrong length."""
    whole = _call(ranker, rset, mc_passes)
    if rset.n_queries == 1:
        return [whole]
    n = rset.n_candidates
    if whole.fault is None and whole.scores.shape == (n,) and (whole.std is None or whole.std.shape == (n,)):
        bounds = zip(rset.offsets[:-1], rset.offsets[1:])
        return [ModelOutput(whole.scores[a:b], None if whole.std is None else whole.std[a:b]) for a, b in bounds]
    return [_call(ranker, rset.subset([i]), mc_passes) for i in range(rset.n_queries)]


def _call(ranker, rset: RankingSet, mc_passes: int) -> ModelOutput:
    try:
        if mc_passes > 0 and supports_uncertainty(ranker):
            mean, std = ranker.score_with_uncertainty(rset, mc_passes)
            return ModelOutput(_floats(mean), _floats(std))
        return ModelOutput(_floats(ranker.score(rset)))
    except Exception as e:  # noqa: BLE001 — any model failure is a fallback, never a lost query
        return ModelOutput(fault=MODEL_ERROR, detail=f"{type(e).__name__}: {str(e)[:200]}")


def _floats(values) -> np.ndarray:
    # A model returning non-numbers raises here and is reported as a model error.
    return np.asarray(values, dtype=np.float64)
