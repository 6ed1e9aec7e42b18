"""Known answers for the vectorised ranking metrics, checked by hand and against a plain loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmrank.errors import ConfigError, DataError
from mmrank.metrics import (
    average_precision,
    compliance_at_k,
    evaluate,
    evaluate_per_query,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    parse_metric,
    per_query_metrics,
    precision_at_k,
    recall_at_k,
)

LOG3 = math.log2(3)

# Three queries of sizes 3, 2, 4 (variable group sizes, flat layout).
# q0: labels [2, 0, 1], scores [0.1, 0.5, 0.3] -> ranked labels [0, 1, 2]
# q1: labels [0, 0] (nothing relevant)
# q2: labels [1, 0, 0, 1], scores [0.9, 0.8, 0.7, 0.1] -> ranked labels [1, 0, 0, 1]
LABELS = np.array([2, 0, 1, 0, 0, 1, 0, 0, 1], dtype=float)
SCORES = np.array([0.1, 0.5, 0.3, 1.0, 0.0, 0.9, 0.8, 0.7, 0.1])
OFFSETS = np.array([0, 3, 5, 9])


def test_ndcg_exponential_known_answer():
    # q0 exponential gains ranked [0, 1, 3]; ideal [3, 1, 0]
    dcg2, idcg2 = 1 / LOG3, 3 + 1 / LOG3
    q2_dcg2, q2_idcg2 = 1.0, 1 + 1 / LOG3
    got = ndcg_at_k(LABELS, SCORES, OFFSETS, 2)
    np.testing.assert_allclose(got, [dcg2 / idcg2, 1.0, q2_dcg2 / q2_idcg2], rtol=0, atol=1e-15)
    full = ndcg_at_k(LABELS, SCORES, OFFSETS, None)
    q2_full = (1 + 1 / math.log2(5)) / (1 + 1 / LOG3)
    np.testing.assert_allclose(full, [(1 / LOG3 + 3 / 2) / (3 + 1 / LOG3), 1.0, q2_full], atol=1e-15)


def test_ndcg_linear_gain_known_answer():
    got = ndcg_at_k(LABELS, SCORES, OFFSETS, 3, gain="linear")
    # q0 linear gains ranked [0, 1, 2]; ideal [2, 1, 0]
    expected_q0 = (1 / LOG3 + 2 / 2) / (2 + 1 / LOG3)
    assert got[0] == pytest.approx(expected_q0, abs=1e-15)


def test_ndcg_k_beyond_list_length_is_whole_list():
    np.testing.assert_array_equal(
        ndcg_at_k(LABELS, SCORES, OFFSETS, 50), ndcg_at_k(LABELS, SCORES, OFFSETS, None)
    )


@pytest.mark.parametrize("mode, expected", [("one", 1.0), ("zero", 0.0)])
def test_no_relevant_fills_every_label_metric(mode, expected):
    names = ["ndcg@5", "hr@5", "mrr", "map", "recall@5"]
    got = per_query_metrics(LABELS, SCORES, OFFSETS, names, no_relevant=mode)
    for name in names:
        assert got[name][1] == expected, name


def test_no_relevant_skip_gives_nan_and_is_left_out_of_means():
    names = ["ndcg@5", "hr@5", "mrr", "map", "recall@5", "precision@1"]
    got = per_query_metrics(LABELS, SCORES, OFFSETS, names, no_relevant="skip")
    for name in names:
        assert np.isnan(got[name][1]), name
        assert not np.isnan(got[name][[0, 2]]).any(), name
    rset = make_set(LABELS, OFFSETS)
    means = evaluate(rset, SCORES, ["mrr"], no_relevant="skip")
    assert means["mrr"] == pytest.approx((0.5 + 1.0) / 2)
    # nothing left to average: NaN, not a made-up number
    nothing = evaluate(make_set(np.zeros(9), OFFSETS), SCORES, ["mrr", "ndcg@5"], no_relevant="skip")
    assert all(np.isnan(v) for v in nothing.values())


def test_precision_is_zero_without_relevant_under_one_and_zero():
    for mode in ("one", "zero"):
        assert precision_at_k(LABELS, SCORES, OFFSETS, 2, no_relevant=mode)[1] == 0.0


def test_binary_metrics_known_answers():
    # q0 ranked relevant flags [0, 1, 1] (threshold 1); q2 ranked [1, 0, 0, 1]
    np.testing.assert_array_equal(hit_rate_at_k(LABELS, SCORES, OFFSETS, 1), [0, 1, 1])
    np.testing.assert_array_equal(mrr(LABELS, SCORES, OFFSETS), [0.5, 1, 1])
    np.testing.assert_array_equal(mrr(LABELS, SCORES, OFFSETS, 1), [0.0, 1, 1])
    ap = average_precision(LABELS, SCORES, OFFSETS)
    np.testing.assert_allclose(ap, [(1 / 2 + 2 / 3) / 2, 1.0, (1 + 2 / 4) / 2], atol=1e-15)
    # AP@2 still divides by all relevant (trec_eval): q0 only the hit at rank 2 counts
    np.testing.assert_allclose(average_precision(LABELS, SCORES, OFFSETS, 2), [0.25, 1.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(recall_at_k(LABELS, SCORES, OFFSETS, 2), [0.5, 1.0, 0.5])
    np.testing.assert_allclose(precision_at_k(LABELS, SCORES, OFFSETS, 2), [0.5, 0.0, 0.5])
    # precision divides by k even when the list is shorter (q0 has 3 candidates)
    np.testing.assert_allclose(precision_at_k(LABELS, SCORES, OFFSETS, 10), [0.2, 0.0, 0.2])


def test_relevance_threshold_moves_what_counts_as_relevant():
    # threshold 2: only q0's first candidate (label 2, ranked third) is relevant
    got = per_query_metrics(LABELS, SCORES, OFFSETS, ["mrr", "hr@2"], relevance_threshold=2,
                            no_relevant="zero")
    np.testing.assert_allclose(got["mrr"], [1 / 3, 0, 0])
    np.testing.assert_allclose(got["hr@2"], [0, 0, 0])


def test_ties_are_broken_by_original_position():
    labels = np.array([0, 1, 0, 1])
    scores = np.zeros(4)  # all tied: ranking is the input order
    assert mrr(labels, scores, [0, 4])[0] == 0.5
    assert ndcg_at_k(labels, scores, [0, 4], 2)[0] == pytest.approx((1 / LOG3) / (1 + 1 / LOG3))
    # reversing the input order reverses the tie-break
    assert mrr(labels[::-1], scores, [0, 4])[0] == 1.0
    # partial ties: the higher score still wins whatever the position
    # ranked: row 2 (0.9), then the tied rows 0 and 1 in input order
    assert mrr([0, 1, 0], [0.5, 0.5, 0.9], [0, 3])[0] == pytest.approx(1 / 3)
    assert mrr([1, 0, 0], [0.5, 0.5, 0.9], [0, 3])[0] == 0.5


def test_minus_infinity_is_a_valid_score_but_nan_is_refused():
    assert mrr([1, 0], [-np.inf, 0.0], [0, 2])[0] == 0.5
    with pytest.raises(DataError, match="NaN"):
        mrr([1, 0], [np.nan, 0.0], [0, 2])


def test_compliance_known_answer_and_short_lists():
    conflict = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0])
    # q0 ranked conflict [0, 0, 1]; q1 ranked [0, 1]; q2 ranked [1, 0, 0, 0]
    np.testing.assert_allclose(compliance_at_k(conflict, SCORES, OFFSETS, 2), [1.0, 0.5, 0.5])
    # k=10 beyond every list: share of the whole list
    np.testing.assert_allclose(compliance_at_k(conflict, SCORES, OFFSETS, 10), [2 / 3, 0.5, 0.75])
    empty = compliance_at_k([], [], [0, 0], 5)
    assert np.isnan(empty).all()


def test_empty_query_among_others():
    offsets = np.array([0, 0, 2])
    got = per_query_metrics([1, 0], [0.1, 0.2], offsets, ["ndcg@1", "mrr"], no_relevant="zero")
    np.testing.assert_allclose(got["ndcg@1"], [0.0, 0.0])
    np.testing.assert_allclose(got["mrr"], [0.0, 0.5])


def test_metric_names_are_parsed_and_unknown_ones_refused():
    assert parse_metric("NDCG@10") == ("ndcg", 10)
    assert parse_metric("map") == ("map", None)
    for bad in ("ndgc@10", "ndcg@0", "ndcg@x", "p@5"):
        with pytest.raises(ConfigError):
            parse_metric(bad)
    with pytest.raises(ConfigError, match="conflict"):
        per_query_metrics(LABELS, SCORES, OFFSETS, ["compliance@5"])
    with pytest.raises(ConfigError, match="gain"):
        per_query_metrics(LABELS, SCORES, OFFSETS, gain="log")
    with pytest.raises(ConfigError, match="no_relevant"):
        per_query_metrics(LABELS, SCORES, OFFSETS, no_relevant="ignore")


def test_shape_mismatches_are_data_errors():
    with pytest.raises(DataError, match="offsets"):
        per_query_metrics(LABELS, SCORES, [0, 3, 5, 8])
    with pytest.raises(DataError, match="labels"):
        per_query_metrics(LABELS[:-1], SCORES, OFFSETS)
    with pytest.raises(DataError, match="1-D"):
        per_query_metrics(LABELS, SCORES[:, None], OFFSETS)


def _loop_reference(labels, scores, offsets, k, thr=1.0):
    """A deliberately plain per-query implementation of the documented conventions."""
    out = {"ndcg": [], "mrr": [], "map": [], "recall": [], "precision": [], "hr": []}
    for a, b in zip(offsets[:-1], offsets[1:]):
        lab, sc = labels[a:b], scores[a:b]
        order = sorted(range(b - a), key=lambda i: (-sc[i], i))
        ranked = lab[order]
        gains = 2.0 ** ranked - 1
        disc = 1 / np.log2(np.arange(2, len(ranked) + 2))
        dcg = float(np.sum((gains * disc)[:k]))
        idcg = float(np.sum(((2.0 ** np.sort(lab)[::-1] - 1) * disc)[:k]))
        rel = ranked >= thr
        n_rel = rel.sum()
        top = rel[:k]
        first = np.flatnonzero(top)
        out["ndcg"].append(dcg / idcg if idcg > 0 else 1.0)
        out["hr"].append(float(top.any()) if n_rel else 1.0)
        out["mrr"].append((1 / (first[0] + 1) if len(first) else 0.0) if n_rel else 1.0)
        precs = [top[: i + 1].sum() / (i + 1) for i in np.flatnonzero(top)]
        out["map"].append(sum(precs) / n_rel if n_rel else 1.0)
        out["recall"].append(top.sum() / n_rel if n_rel else 1.0)
        out["precision"].append(top.sum() / k)
    return {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_plain_loop_on_random_groups_with_ties(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 12, 60)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = offsets[-1]
    labels = rng.integers(0, 4, n).astype(float)
    scores = rng.integers(0, 4, n).astype(float)  # many ties on purpose
    for k in (1, 3, 10):
        names = [f"{m}@{k}" for m in ("ndcg", "mrr", "map", "recall", "precision", "hr")]
        got = per_query_metrics(labels, scores, offsets, names)
        ref = _loop_reference(labels, scores, offsets, k)
        for name in names:
            np.testing.assert_allclose(got[name], ref[name.split("@")[0]], atol=1e-12, err_msg=name)


def test_packed_key_sort_and_lexsort_fallback_agree(monkeypatch):
    import mmrank.metrics as metrics

    rng = np.random.default_rng(7)
    sizes = rng.integers(0, 15, 40)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    labels = rng.integers(0, 4, offsets[-1])
    scores = np.round(rng.normal(size=offsets[-1]), 1)  # ties
    names = ["ndcg@3", "map", "mrr@5"]
    packed = per_query_metrics(labels, scores, offsets, names)
    monkeypatch.setattr(metrics, "_MAX_PACKED_KEY", 0)  # force the lexsort path
    fallback = per_query_metrics(labels, scores, offsets, names)
    for name in names:
        np.testing.assert_array_equal(packed[name], fallback[name])


def test_shared_sort_gives_the_same_as_single_metric_calls():
    rng = np.random.default_rng(5)
    offsets = np.arange(0, 201, 10)
    labels, scores = rng.integers(0, 3, 200), rng.normal(size=200)
    together = per_query_metrics(labels, scores, offsets, ["ndcg@5", "map", "recall@3"])
    np.testing.assert_array_equal(together["ndcg@5"], ndcg_at_k(labels, scores, offsets, 5))
    np.testing.assert_array_equal(together["map"], average_precision(labels, scores, offsets))
    np.testing.assert_array_equal(together["recall@3"], recall_at_k(labels, scores, offsets, 3))


def make_set(labels, offsets, conflict=None):
    from mmrank.data.model import RankingSet

    n, q = len(labels), len(offsets) - 1
    feats = {} if conflict is None else {"conflict": np.asarray(conflict, dtype=float)}
    return RankingSet(query_ids=[f"q{i}" for i in range(q)], offsets=offsets,
                      candidate_ids=[f"c{i}" for i in range(n)], labels=labels,
                      domains=["a", "b", "a"][:q], features=feats)


def test_evaluate_and_per_query_table():
    conflict = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0])
    rset = make_set(LABELS, OFFSETS, conflict)
    table = evaluate_per_query(rset, SCORES, ["mrr", "compliance@2"])
    assert list(table.columns) == ["query_id", "domain", "mrr", "compliance@2"]
    assert list(table["query_id"]) == ["q0", "q1", "q2"]
    assert list(table["domain"]) == ["a", "b", "a"]
    np.testing.assert_allclose(table["mrr"], [0.5, 1, 1])
    # the conflict modality of the set is used when no conflict= is given
    np.testing.assert_allclose(table["compliance@2"], [1.0, 0.5, 0.5])
    means = evaluate(rset, SCORES, ["mrr", "compliance@2"])
    assert means == pytest.approx({"mrr": 2.5 / 3, "compliance@2": 2 / 3})


def test_evaluate_default_metrics_on_toy_set(toy_set):
    rset = toy_set
    perfect = evaluate(rset, rset.labels + 0.0)
    assert set(perfect) == {"ndcg@1", "ndcg@5", "ndcg@10"}
    assert all(v == pytest.approx(1.0) for v in perfect.values())
    worst = evaluate(rset, -rset.labels)
    assert all(v < 0.8 for v in worst.values())


def test_large_input_matches_the_loop_on_a_sample_of_queries():
    """100k queries in one call (timing lives in benchmarks/); spot-check 50 of them."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 10, 100_000)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    labels = rng.integers(0, 3, offsets[-1]).astype(float)
    scores = rng.normal(size=offsets[-1])
    got = per_query_metrics(labels, scores, offsets, ["ndcg@10", "mrr@10"])
    assert got["ndcg@10"].shape == (100_000,)
    sample = rng.choice(100_000, 50, replace=False)
    for q in sample:
        a, b = offsets[q], offsets[q + 1]
        ref = _loop_reference(labels[a:b], scores[a:b], np.array([0, b - a]), 10)
        assert got["ndcg@10"][q] == pytest.approx(ref["ndcg"][0], abs=1e-12)
        assert got["mrr@10"][q] == pytest.approx(ref["mrr"][0], abs=1e-12)


def test_letor_convention_reproduces_a_hand_computed_ndcg_with_a_no_relevant_query():
    # Query 1 ranked by score: labels 2, 0, 1. LETOR tool: gain 2^l - 1, discount 1 at ranks 1-2,
    # 1/log2(r) after: DCG@3 = 3 + 0 + 1/log2(3) = 3.63093; ideal 2, 1, 0: 3 + 1 + 0 = 4.
    # Query 2 has no relevant document: LETOR counts it 0 (the default counts it 1).
    labels = np.array([2, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.4])
    offsets = np.array([0, 3, 5])
    letor = per_query_metrics(labels, scores, offsets, ["ndcg@3", "ndcg@1"], convention="letor")
    np.testing.assert_allclose(letor["ndcg@3"], [(3 + 1 / np.log2(3)) / 4, 0.0], rtol=1e-12)
    np.testing.assert_allclose(letor["ndcg@1"], [1.0, 0.0])
    default = per_query_metrics(labels, scores, offsets, ["ndcg@3"])
    np.testing.assert_allclose(default["ndcg@3"], [(3 + 0.5) / (3 + 1 / np.log2(3)), 1.0], rtol=1e-12)
    # an explicit option overrides the convention's
    assert per_query_metrics(labels, scores, offsets, ["ndcg@3"], convention="letor", no_relevant="one")["ndcg@3"][1] == 1.0
