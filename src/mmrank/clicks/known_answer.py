"""The click models' known answer on real labels: simulate clicks with a known position bias
from a data set's true relevance, fit the click model, and compare what it recovered (the
position curve, the relevance order) and what a ranker trained on its weak labels achieves with
the truth.

``run_fold`` is one LETOR-style fold (train + valid queries get the simulated sessions; the test
queries are scored with true labels only), used by the integration test and by
``benchmarks/clicks_mq2008.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmrank.clicks.cascade import CascadeModel
from mmrank.clicks.labels import relevance_agreement, weak_labels
from mmrank.clicks.pbm import PositionBasedModel
from mmrank.clicks.simulate import power_law_examination, simulate_sessions
from mmrank.data.model import RankingSet, concat_ranking_sets
from mmrank.metrics import ndcg_at_k
from mmrank.models.baselines import LambdaMART


@dataclass
class FoldResult:
    """What one fold's known answer found (per-query nDCG@10 arrays are over the test queries)."""

    theta_true: np.ndarray
    theta_pbm: np.ndarray
    agreement: dict  # model name -> relevance_agreement(...) on the logged queries
    ndcg_first_stage: np.ndarray
    ndcg_true_labels: np.ndarray
    ndcg_weak: dict = field(default_factory=dict)  # label source name -> per-query nDCG@10

    @property
    def theta_max_error(self) -> float:
        """Largest absolute error of the recovered examination curve over the positions."""
        return float(np.max(np.abs(self.theta_pbm - self.theta_true)))

    def gain_ratio(self, name: str) -> float:
        """(weak − first stage) / (true − first stage), mean nDCG@10 gains over the test queries."""
        first = self.ndcg_first_stage.mean()
        return float((self.ndcg_weak[name].mean() - first) / (self.ndcg_true_labels.mean() - first))


def _ndcg(rset: RankingSet, scores: np.ndarray) -> np.ndarray:
    return ndcg_at_k(rset.labels, scores, rset.offsets, 10)


def run_fold(train: RankingSet, valid: RankingSet, test: RankingSet, first_stage, *, sessions: int = 100_000,
             positions: int = 10, eta: float = 1.0, noise: float = 1.0, seed: int = 0, grades: tuple[int, ...] = (3,),
             cascade: bool = True, ranker_params: dict | None = None) -> FoldResult:
    """Simulate ``sessions`` over the train + valid queries, fit PBM (and the cascade model),
    train LambdaMART on true labels and on each weak labelling, and score the test queries.

    Args:
        train, valid, test: one fold, with true labels.
        first_stage: ``rset -> (N,)`` scores of the logging ranker (e.g. BM25 as a feature).
        sessions, positions, eta, noise, seed: the simulation (see ``mmrank.clicks.simulate``).
        grades: weak labellings of the PBM relevance to train on (``pbm/g<G>`` in ``ndcg_weak``).
        cascade: also train on the cascade model's labels (``cascade/g<G>`` for the first grade).
        ranker_params: LambdaMART parameters (the same for the true and the weak model).

    Returns:
        A :class:`FoldResult`.
    """
    params = {"seed": 0, "num_threads": 1, **(ranker_params or {})}
    logged = concat_ranking_sets([train, valid])
    theta = power_law_examination(positions, eta)
    log = simulate_sessions(logged, first_stage(logged), sessions, theta, noise=noise, seed=seed)
    pbm = PositionBasedModel().fit(log)
    result = FoldResult(theta, pbm.theta_, {"pbm": relevance_agreement(logged, pbm)}, _ndcg(test, first_stage(test)),
                        _ndcg(test, LambdaMART(**params).fit(train, valid).score(test)))
    models = {f"pbm/g{g}": (pbm, g) for g in grades}
    if cascade:
        cm = CascadeModel().fit(log)
        result.agreement["cascade"] = relevance_agreement(logged, cm)
        models[f"cascade/g{grades[0]}"] = (cm, grades[0])
    for name, (model, g) in models.items():
        weak_train = weak_labels(train, model, grades=g).rset
        weak_valid = weak_labels(valid, model, grades=g).rset
        result.ndcg_weak[name] = _ndcg(test, LambdaMART(**params).fit(weak_train, weak_valid).score(test))
    return result
