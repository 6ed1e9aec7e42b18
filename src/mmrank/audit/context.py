"""Everything a check may look at, computed once: data, fitted models, their test scores and
per-query metrics, the policy and the job engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import numpy as np

from mmrank.data.model import Interactions, RankingSet
from mmrank.metrics import per_query_metrics


class PolicyView:
    """What every audit context derives from its ``policy``: the metric, the seed, the
    bootstrap options. Shared by reranking (``AuditContext``) and recommendation
    (``mmrank.audit.recommender_context.RecommenderAuditContext``) audits."""

    policy: dict
    unit = "queries"  # what one paired observation is, in messages ("users" for recommenders)

    @property
    def metric(self) -> str:
        """The metric every comparison uses: the policy's ``metric`` key (e.g. ``"ndcg@10"``)."""
        return str(self.policy["metric"])

    @property
    def seed(self) -> int:
        """The policy's ``seed`` (default 0), shared by every bootstrap, permutation and sampling draw."""
        return int(self.policy.get("seed", 0))

    def stats_options(self) -> dict:
        """Keyword arguments for the ``mmrank.stats`` bootstrap functions, from the policy's
        ``significance.bootstrap_resamples``, ``significance.confidence`` and
        ``significance.bootstrap_method``, plus :attr:`seed`.

        Returns:
            ``{"n_resamples": int, "confidence": float, "method": str, "seed": int}``."""
        s = self.policy["significance"]
        return {"n_resamples": int(s["bootstrap_resamples"]), "confidence": float(s["confidence"]),
                "method": str(s["bootstrap_method"]), "seed": self.seed}


def tie_share(scores: np.ndarray, offsets: np.ndarray) -> float:
    """Share of candidates whose score equals another candidate's score in the same query."""
    tied = 0
    for i in range(len(offsets) - 1):
        x = scores[offsets[i]:offsets[i + 1]]
        if len(x) > 1:
            _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
            tied += int((counts[inverse] > 1).sum())
    return tied / len(scores) if len(scores) else 0.0


def random_tie_metric(ctx: "AuditContext", rset: RankingSet, scores: np.ndarray, draws: int) -> np.ndarray:
    """(Q,) mean over ``draws`` seeded random orders of the tied scores of the per-query metric."""
    rng = np.random.default_rng(ctx.seed + 7)
    scores = np.asarray(scores, dtype=np.float64)
    out = []
    for _ in range(draws):
        order = np.lexsort((rng.random(len(scores)), scores))  # ascending score, random among equals
        strict = np.empty(len(scores))
        strict[order] = np.arange(len(scores), dtype=np.float64)
        out.append(ctx.per_query(rset, strict))
    return np.mean(out, axis=0)


@dataclass
class AuditContext(PolicyView):
    """The inputs of a reranking audit (splits, fitted model and baseline, policy, job engine,
    optional interactions and run directory) with the test scores and per-query metrics
    computed lazily, once, for every check to share."""

    train: RankingSet
    test: RankingSet
    model: Any                                   # fitted Ranker: score(rset) -> (N,)
    baseline: Any | None                         # fitted Ranker or None
    policy: dict
    valid: RankingSet | None = None
    make_model: Callable[[], Any] | None = None  # a fresh, unfitted model of the same config
    fit_options: dict = field(default_factory=dict)  # extra fit() keywords, e.g. {"settings": ...} for neural rankers
    engine: str = "joblib"
    n_jobs: int = 2
    address: str | None = None
    train_interactions: Interactions | None = None
    test_interactions: Interactions | None = None
    interactions: Interactions | None = None     # all events, for split_sensitivity
    fit_evaluate: Callable | None = None         # (train_events, test_events) -> per-user metric
    sampled_vs_full: dict | None = None          # precomputed {"sampled": (U,), "full": (U,)} (recommenders)
    run_dir: Any = None                          # the model's run directory (its recorded provenance), if any
    query_times: Any = None                      # QueryTimes: each query's user and cut time (time-split tasks)
    interactions_hint: str | None = None         # what to provide when the time checks lack interactions
    extras: dict = field(default_factory=dict)   # plot data collected along the way (report)
    prefetched: dict = field(default_factory=dict)   # check name -> its jobs' results, run in the audit's one pool
    job_seconds: dict = field(default_factory=dict)  # check name -> summed own seconds of its pool jobs

    def job_results(self, name: str, plan: Callable[["AuditContext"], list[tuple]]) -> list:
        """The results of check ``name``'s jobs (``plan(self)``: ``(fn, args)`` each): those the
        audit ran in its one job pool when there are, else run now on the context's engine."""
        if name in self.prefetched:
            return self.prefetched[name]
        from mmrank.audit.jobs import run_pool

        done = run_pool(plan(self), engine=self.engine, n_jobs=self.n_jobs, address=self.address)
        self.job_seconds[name] = self.job_seconds.get(name, 0.0) + sum(s for _, s in done)
        return [r for r, _ in done]

    @property
    def domains(self) -> np.ndarray | None:
        """(Q,) domain of each test query, for per-domain comparisons."""
        return self.test.domains

    def per_query(self, rset: RankingSet, scores: np.ndarray, metric: str | None = None,
                  no_relevant: str | None = None) -> np.ndarray:
        """Per-query values of a metric for ``scores`` on ``rset``, under the policy's
        ``convention`` and ``gain``.

        Args:
            rset: the queries and labels the scores belong to.
            scores: (N,) one score per candidate of ``rset``, higher ranks first.
            metric: a metric name; default the policy's ``metric``.
            no_relevant: what queries with nothing relevant get; default the policy's
                ``no_relevant`` (``"skip"``: NaN, so they drop out of comparisons).

        Returns:
            (Q,) float64, one value per query of ``rset``."""
        name = metric or self.metric
        # The policy's convention (default | letor) sets gain and discount; queries with nothing
        # relevant stay out of comparisons (policy no_relevant: skip) under either convention.
        return per_query_metrics(rset.labels, scores, rset.offsets, (name,), convention=self.policy.get("convention"),
                                 gain=self.policy.get("gain"),
                                 no_relevant=no_relevant or self.policy.get("no_relevant", "skip"))[name]

    @cached_property
    def model_scores(self) -> np.ndarray:
        """(N,) float64 scores of the fitted model on the test set (computed once)."""
        return np.asarray(self.model.score(self.test), dtype=np.float64)

    @cached_property
    def baseline_scores(self) -> np.ndarray | None:
        """(N,) float64 scores of the baseline on the test set, or None without a baseline."""
        if self.baseline is None:
            return None
        return np.asarray(self.baseline.score(self.test), dtype=np.float64)

    @cached_property
    def model_per_query(self) -> np.ndarray:
        """(Q,) the audit metric of the model on each test query (NaN where not evaluable)."""
        return self.per_query(self.test, self.model_scores)

    @cached_property
    def baseline_per_query(self) -> np.ndarray | None:
        """(Q,) the audit metric of the baseline on each test query, or None without a baseline."""
        return None if self.baseline_scores is None else self.per_query(self.test, self.baseline_scores)

    def per_query_random_ties(self, scores: np.ndarray, draws: int) -> np.ndarray:
        """(Q,) the metric with tied scores put in random order (mean over ``draws`` seeded
        orders) instead of by row position: a gain made by the file's row order disappears."""
        return random_tie_metric(self, self.test, scores, draws)

    @cached_property
    def chance_per_query(self) -> np.ndarray:
        """(Q,) expected metric of uniformly random scores (mean of ``label_permutation_control.chance_draws``
        seeded draws): the level a model that learnt nothing reaches."""
        rng = np.random.default_rng(self.seed)
        draws = int(self.policy["label_permutation_control"]["chance_draws"])
        return np.mean([self.per_query(self.test, rng.random(self.test.n_candidates)) for _ in range(draws)], axis=0)

    @cached_property
    def evaluable(self) -> np.ndarray:
        """(Q,) bool: test queries on which the metric is defined (something relevant to find)."""
        return ~np.isnan(self.model_per_query)
