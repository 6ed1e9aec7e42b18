"""The engine with real (faulty) rankers: per-query fault isolation in the batch path, the
timeout in the HTTP path, MC-dropout uncertainty, rollout gating — and the permutation
invariant under every injected fault."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrank.data.model import RankingSet
from mmrank.serve.policy import RerankPolicy, decide_many, decide_one
from mmrank.serve.reorder import (
    FALLBACK, MODEL_ERROR, NON_FINITE, OUTSIDE_ROLLOUT, RERANKED, SHADOW, TIMEOUT, UNCERTAINTY, WRONG_LENGTH,
    is_permutation,
)
from mmrank.serve.rollout import in_rollout

FAULTS = ["ok", "raise", "nan", "inf", "short", "long", "junk"]
EXPECTED_REASON = {"raise": MODEL_ERROR, "nan": NON_FINITE, "inf": NON_FINITE, "short": WRONG_LENGTH,
                   "long": WRONG_LENGTH, "junk": MODEL_ERROR}


class FaultyRanker:
    """Scores = feature column ``x``; a query whose id names a fault gets that fault, so a
    multi-query call fails as a whole and the engine must isolate the faulty query."""

    kind = "faulty"

    def __init__(self, std: float | None = None, sleep_s: float = 0.0) -> None:
        self.std, self.sleep_s, self.calls = std, sleep_s, 0

    def score(self, rset: RankingSet) -> np.ndarray:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        faults = {str(q).split(":")[0] for q in rset.query_ids}
        x = rset.features["x"][:, 0].astype(np.float64)
        if "raise" in faults:
            raise RuntimeError("injected failure")
        if "junk" in faults:
            return ["not a number"] * len(x)
        if "short" in faults:
            return x[:-1]
        if "long" in faults:
            return np.concatenate([x, [1.0]])
        out = x.copy()
        for i, q in enumerate(rset.query_ids):
            if str(q).startswith(("nan", "inf")):
                a = rset.offsets[i]
                out[a] = np.nan if str(q).startswith("nan") else np.inf
        return out


class UncertainRanker(FaultyRanker):
    def score_with_uncertainty(self, rset: RankingSet, n_passes: int):
        assert n_passes == 7
        x = self.score(rset)
        return x, np.full(len(x), self.std)


def one_query(qid: str, x: np.ndarray) -> RankingSet:
    n = len(x)
    return RankingSet(query_ids=[qid], offsets=[0, n], candidate_ids=[f"{qid}/{j}" for j in range(n)],
                      labels=np.zeros(n), features={"x": x[:, None]})


@st.composite
def query_batches(draw):
    k = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    queries = []
    for i in range(k):
        fault = draw(st.sampled_from(FAULTS))
        n = draw(st.integers(1, 12))
        x = rng.integers(0, 3, n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)
        queries.append((fault, one_query(f"{fault}:{i}", x)))
    return queries, draw(st.none() | st.integers(1, 15)), draw(st.booleans())


def _check(fault: str, q: RankingSet, d, policy: RerankPolicy) -> None:
    n = q.n_candidates
    assert is_permutation(d.order, n)
    m = n if policy.top_m is None else min(n, policy.top_m)
    if fault == "nan" or fault == "inf":
        # the planted value sits on the first candidate, which is always in the top-M
        assert (d.status, d.reason) == (FALLBACK, NON_FINITE)
    elif fault != "ok":
        assert (d.status, d.reason) == (FALLBACK, EXPECTED_REASON[fault])
    else:
        x = q.features["x"][:m, 0]
        expected = np.concatenate([np.argsort(-x, kind="stable"), np.arange(m, n)])
        assert d.status == (SHADOW if policy.shadow else RERANKED)
        assert np.array_equal(d.model_order, expected)
        assert np.array_equal(d.order, np.arange(n) if policy.shadow else expected)
    if d.status == FALLBACK:
        assert np.array_equal(d.order, np.arange(n))


@settings(max_examples=2500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(query_batches())
def test_batch_path_isolates_each_faulty_query(batch):
    queries, top_m, shadow = batch
    policy = RerankPolicy(top_m=top_m, shadow=shadow)
    decisions = decide_many(FaultyRanker(), [q for _, q in queries], policy)
    assert len(decisions) == len(queries)
    for (fault, q), d in zip(queries, decisions):
        _check(fault, q, d, policy)


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(query_batches())
def test_http_path_under_every_fault(batch):
    queries, top_m, shadow = batch
    policy = RerankPolicy(top_m=top_m, shadow=shadow, timeout_ms=5000)
    with ThreadPoolExecutor(2) as pool:
        for fault, q in queries:
            d = asyncio.run(decide_one(FaultyRanker(), q, policy, pool))
            _check(fault, q, d, policy)


def test_slow_model_times_out_to_the_original_order():
    q = one_query("ok:slow", np.array([0.1, 0.9, 0.5]))
    with ThreadPoolExecutor(2) as pool:
        slow = asyncio.run(decide_one(FaultyRanker(sleep_s=0.5), q, RerankPolicy(timeout_ms=20), pool))
        fast = asyncio.run(decide_one(FaultyRanker(), q, RerankPolicy(timeout_ms=2000), pool))
    assert (slow.status, slow.reason, slow.order.tolist()) == (FALLBACK, TIMEOUT, [0, 1, 2])
    assert (fast.status, fast.order.tolist()) == (RERANKED, [1, 2, 0])


@pytest.mark.parametrize("std, status", [(0.05, RERANKED), (0.5, FALLBACK)])
def test_mc_dropout_uncertainty_above_the_threshold_falls_back(std, status):
    q = one_query("ok:u", np.array([0.1, 0.9, 0.5]))
    policy = RerankPolicy(uncertainty_threshold=0.2, mc_passes=7)
    (d,) = decide_many(UncertainRanker(std=std), [q], policy)
    assert d.status == status and d.uncertainty == pytest.approx(std)
    if status == FALLBACK:
        assert d.reason == UNCERTAINTY and d.order.tolist() == [0, 1, 2]
    # without a threshold the plain score() is used: no uncertainty at all
    (plain,) = decide_many(UncertainRanker(std=std), [q], RerankPolicy())
    assert plain.status == RERANKED and plain.uncertainty is None


def test_rollout_gates_queries_without_calling_the_model():
    queries = [one_query(f"ok:{i}", np.array([0.0, 1.0])) for i in range(200)]
    ranker = FaultyRanker()
    decisions = decide_many(ranker, queries, RerankPolicy(rollout_percent=30))
    inside = [in_rollout(q.query_ids[0], 30) for q in queries]
    assert 30 < sum(inside) < 90
    for d, ins in zip(decisions, inside):
        assert (d.status, d.reason) == ((RERANKED, "ok") if ins else (FALLBACK, OUTSIDE_ROLLOUT))
    assert ranker.calls == 1  # the in-rollout queries were scored together, in one call
    none = FaultyRanker()
    assert all(d.reason == OUTSIDE_ROLLOUT for d in decide_many(none, queries, RerankPolicy(rollout_percent=0)))
    assert none.calls == 0
