"""The pure reorder/fallback decision: every answer is a permutation of the request's candidates,
whatever the model produced (property-tested with faults injected as data), and the rollout
bucket is the stable sha256 one."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrank.serve.reorder import (
    FALLBACK, MODEL_ERROR, NON_FINITE, OK, RERANKED, SHADOW, SHADOW_MODE, TIMEOUT, UNCERTAINTY, WRONG_LENGTH,
    ModelOutput, answer_candidates, decide, is_permutation, n_scored, ranked_entries,
)
from mmrank.serve.rollout import N_BUCKETS, in_rollout, rollout_bucket

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, 1e308, -1e308])


def _values(rng: np.random.Generator, length: int, style: str) -> np.ndarray:
    """Scores made with numpy from a drawn seed (cheap per example): ties, or spread floats,
    with NaN/inf/extremes planted when ``style`` is "any"."""
    v = rng.integers(0, 4, length).astype(float) if rng.random() < 0.4 else rng.normal(0, 10, length)
    if style == "any" and length:
        planted = rng.random(length) < 0.2
        v[planted] = rng.choice(SPECIAL, planted.sum())
    return v


@st.composite
def model_outputs(draw, m: int):
    """What a model might return for ``m`` candidates: good scores, NaN/inf, the wrong length,
    non-numbers, an exception's fault code, a timeout, with or without (bad) uncertainties."""
    kind = draw(st.sampled_from(["finite", "finite", "any", "short", "long", "fault", "timeout", "junk", "none"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "fault":
        return ModelOutput(fault=MODEL_ERROR, detail="RuntimeError: boom")
    if kind == "timeout":
        return ModelOutput(fault=TIMEOUT, detail="slow")
    if kind == "junk":
        return ModelOutput(scores=np.array(["a"] * m, dtype=object))
    if kind == "none":
        return ModelOutput(scores=None)
    length = {"short": max(m - int(rng.integers(1, 4)), 0), "long": m + int(rng.integers(1, 4))}.get(kind, m)
    scores = _values(rng, length, "finite" if kind == "finite" else "any")
    std = None
    if draw(st.booleans()):
        std_len = m if rng.random() < 0.9 else m + 1
        std = np.abs(_values(rng, std_len, draw(st.sampled_from(["finite", "any"])))) / 10
    return ModelOutput(scores=scores, std=std)


@st.composite
def cases(draw):
    n = draw(st.integers(1, 40))
    top_m = draw(st.none() | st.integers(0, 50))
    output = draw(model_outputs(n_scored(n, top_m)))
    return n, top_m, output, draw(st.booleans()), draw(st.none() | st.floats(0, 5))


@settings(max_examples=7000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_decision_is_always_a_permutation_and_says_why(case):
    n, top_m, output, shadow, threshold = case
    d = decide(n, top_m, output, shadow=shadow, uncertainty_threshold=threshold)
    assert is_permutation(d.order, n)
    assert d.scores.shape == (n,)
    m = n_scored(n, top_m)
    identity = np.arange(n)
    if d.status == FALLBACK:
        assert np.array_equal(d.order, identity)
        assert d.reason in (MODEL_ERROR, TIMEOUT, NON_FINITE, WRONG_LENGTH, UNCERTAINTY)
        assert np.all(np.isnan(d.scores))
        if output.fault is not None:
            assert d.reason == output.fault
        if d.reason == UNCERTAINTY:
            assert threshold is not None and d.uncertainty > threshold
        return
    # The model's order was accepted: it must have been usable.
    assert output.fault is None
    scores = np.asarray(output.scores, dtype=np.float64)
    assert scores.shape == (m,) and np.all(np.isfinite(scores))
    assert np.array_equal(d.scores[:m], scores) and np.all(np.isnan(d.scores[m:]))
    expected = np.concatenate([np.argsort(-scores, kind="stable"), np.arange(m, n)])
    assert np.array_equal(d.model_order, expected)
    if shadow:
        assert (d.status, d.reason) == (SHADOW, SHADOW_MODE) and np.array_equal(d.order, identity)
    else:
        assert (d.status, d.reason) == (RERANKED, OK) and np.array_equal(d.order, expected)
        # top-M sorted by score, ties in their original order, the tail untouched
        top = d.order[:m]
        assert np.all(np.diff(scores[top]) <= 0)
        ties = np.diff(scores[top]) == 0
        assert np.all(np.diff(top)[ties] > 0)
        assert np.array_equal(d.order[m:], np.arange(m, n))


def test_examples_of_each_fallback_reason():
    good = np.array([0.1, 0.9, 0.5])
    assert decide(3, None, ModelOutput(good)).order.tolist() == [1, 2, 0]
    assert decide(3, None, ModelOutput(np.array([0.1, np.nan, 0.5]))).reason == NON_FINITE
    assert decide(3, None, ModelOutput(np.array([0.1, np.inf, 0.5]))).reason == NON_FINITE
    assert decide(3, None, ModelOutput(good[:2])).reason == WRONG_LENGTH
    assert decide(5, 3, ModelOutput(good)).order.tolist() == [1, 2, 0, 3, 4]
    unsure = decide(3, None, ModelOutput(good, std=np.array([0.2, 0.4, 0.3])), uncertainty_threshold=0.25)
    assert (unsure.status, unsure.reason) == (FALLBACK, UNCERTAINTY) and unsure.uncertainty == pytest.approx(0.3)
    sure = decide(3, None, ModelOutput(good, std=np.array([0.2, 0.4, 0.3])), uncertainty_threshold=0.35)
    assert sure.status == RERANKED and sure.uncertainty == pytest.approx(0.3)


def test_ranked_entries_carry_rank_original_rank_and_json_safe_scores():
    d = decide(4, 2, ModelOutput(np.array([0.2, 0.7])))
    assert list(ranked_entries(d)) == [(1, 0.7, 1, 2), (0, 0.2, 2, 1), (2, None, 3, 3), (3, None, 4, 4)]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 40), top_m=st.one_of(st.none(), st.integers(1, 50)), seed=st.integers(0, 2**32 - 1),
       style=st.sampled_from(["finite", "any"]), shadow=st.booleans())
def test_answer_candidates_are_the_ranked_entries_rows(n, top_m, seed, style, shadow):
    """The HTTP answer's vectorised rows equal ranked_entries' (batch path) for any decision,
    fallbacks and NaN scores included, with the request's own ids."""
    rng = np.random.default_rng(seed)
    d = decide(n, top_m, ModelOutput(_values(rng, n_scored(n, top_m), style)), shadow=shadow)
    cands = [{"candidate_id": v} for v in rng.permutation(n).tolist()]
    rows = answer_candidates(cands, d)
    want = [{"candidate_id": cands[pos]["candidate_id"], "score": score, "rank": rank, "original_rank": orig}
            for pos, score, rank, orig in ranked_entries(d)]
    assert rows == want
    # and those rows are the decision's, element by element (a reference without arrays)
    reference = [(int(pos), float(d.scores[pos]) if np.isfinite(d.scores[pos]) else None, k + 1, int(pos) + 1)
                 for k, pos in enumerate(d.order)]
    assert ranked_entries(d) == reference
    assert all(type(r["rank"]) is int and type(r["original_rank"]) is int for r in rows)
    assert all(r["score"] is None or type(r["score"]) is float for r in rows)


def test_is_permutation_rejects_near_misses():
    assert is_permutation([2, 0, 1], 3)
    assert is_permutation(np.array([], dtype=np.int64), 0)
    assert not is_permutation([0, 0, 1], 3)
    assert not is_permutation([0, 1], 3)
    assert not is_permutation([1, 2, 3], 3)
    assert not is_permutation([-1, 0, 1], 3)
    assert not is_permutation([0.0, 1.0, 2.0], 3)  # positions are integers
    assert not is_permutation([[0, 1, 2]], 3)


def test_rollout_bucket_is_sha256_of_the_query_id():
    expected = int.from_bytes(hashlib.sha256(b"query-42").digest()[:8], "big") % N_BUCKETS
    assert rollout_bucket("query-42") == expected


def test_rollout_share_matches_the_percentage_and_grows_monotonically():
    ids = [f"q{i}" for i in range(20000)]
    share10 = np.mean([in_rollout(q, 10) for q in ids])
    assert abs(share10 - 0.10) < 0.01
    # raising the percentage only adds queries: nobody who had the model loses it
    assert all(in_rollout(q, 25) for q in ids if in_rollout(q, 10))
    assert not any(in_rollout(q, 0) for q in ids[:100]) and all(in_rollout(q, 100) for q in ids[:100])
