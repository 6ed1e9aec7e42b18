"""Leakage checks: each FAILs on the leak planted for it and PASSes on the honest split."""

from __future__ import annotations

import numpy as np
import pytest

from known_answer.rankers import RidgeRanker
from known_answer.simulator import simulate
from mmrank.audit import FAIL, PASS, SKIP, WARN, audit
from mmrank.audit.feature_label_leakage import pessimistic_scores
from mmrank.data.model import Interactions, RankingSet, concat_ranking_sets
from mmrank.models.baselines import LambdaMART

FAST = {"significance": {"bootstrap_resamples": 500, "permutation_resamples": 500}}


def run(sim, checks, model=None, policy_extra=None, **kw):
    model = model or RidgeRanker().fit(sim.train)
    return audit(model, None, train=sim.train, test=sim.test, train_interactions=sim.train_events,
                 test_interactions=sim.test_events, policy={**FAST, **sim.policy, **(policy_extra or {})},
                 checks=checks, n_jobs=1, **kw)


def test_split_overlap_fails_on_shared_queries_and_passes_on_honest_split():
    clean = run(simulate(0, n_train=60, n_test=40), ["split_overlap"])["split_overlap"]
    assert clean.status == PASS and clean.value == 0.0
    leak = run(simulate(0, ["query_leak"], n_train=60, n_test=40), ["split_overlap"])["split_overlap"]
    assert leak.status == FAIL
    assert leak.value == pytest.approx(8 / 40)
    assert leak.evidence["shared_query_ids"] == 8


def test_split_overlap_sees_a_renamed_copy_by_its_content():
    sim = simulate(1, n_train=40, n_test=30)
    copy = sim.train.subset([3])
    renamed = RankingSet(["brand-new-id"], copy.offsets, [f"x{i}" for i in range(copy.n_candidates)],
                         copy.labels, features=copy.features, baseline_scores=copy.baseline_scores)
    sim.test = concat_ranking_sets([sim.test, renamed])
    res = run(sim, ["split_overlap"])["split_overlap"]
    assert res.status == FAIL
    assert res.evidence["shared_query_ids"] == 0 and res.evidence["shared_query_contents"] == 1


def _noisy_copy(rset: RankingSet, noise: float, seed: int) -> RankingSet:
    rng = np.random.default_rng(seed)
    feats = {k: v + rng.normal(0, noise, v.shape) for k, v in rset.features.items()}
    return RankingSet(rset.query_ids, rset.offsets, [f"copy-{c}" for c in rset.candidate_ids], rset.labels,
                      features=feats, baseline_scores=rset.baseline_scores)


def test_near_duplicates_fail_on_noisy_copies_of_the_same_query():
    sim = simulate(2, n_train=40, n_test=30)
    sim.test = concat_ranking_sets([sim.test, _noisy_copy(sim.train.subset(np.arange(5)), 0.02, 0)])
    res = run(sim, ["near_duplicates"])["near_duplicates"]
    assert res.status == FAIL
    assert res.evidence["copied_queries"] == 5 and res.evidence["same_query_twin_share"] == pytest.approx(100 / sim.test.n_candidates)
    assert res.value == pytest.approx(5 / 35)
    # same query ids but unrelated (non-duplicate) candidates: nothing to report
    sim2 = simulate(2, n_train=40, n_test=30)
    other = simulate(99, n_train=5, n_test=2).train
    sim2.test = concat_ranking_sets([sim2.test, RankingSet(sim2.train.query_ids[:5], other.offsets,
                                     other.candidate_ids, other.labels, features=other.features,
                                     baseline_scores=other.baseline_scores)])
    res2 = run(sim2, ["near_duplicates"])["near_duplicates"]
    assert res2.status == PASS and res2.evidence["copied_queries"] == 0


def test_temporal_leakage_fails_on_future_training_events():
    clean = run(simulate(3, n_train=60, n_test=40), ["temporal_leakage"])["temporal_leakage"]
    assert clean.status == PASS
    res = run(simulate(3, ["temporal_leak"], n_train=60, n_test=40), ["temporal_leakage"])["temporal_leakage"]
    assert res.status == FAIL and res.evidence["future_training_events"] == 6


def test_temporal_leakage_global_cut_and_skip():
    sim = simulate(4, n_train=60, n_test=40)
    cut = float(np.median(sim.train_events.timestamps))
    res = audit(RidgeRanker().fit(sim.train), None, train=sim.train, test=sim.test,
                train_interactions=sim.train_events, test_interactions=sim.test_events,
                policy={"temporal_leakage": {"global_cut": cut}}, checks=["temporal_leakage"], n_jobs=1)
    assert res["temporal_leakage"].status == FAIL
    assert res["temporal_leakage"].evidence["training_events_after_cut"] == int((sim.train_events.timestamps >= cut).sum())
    no_events = audit(RidgeRanker().fit(sim.train), None, train=sim.train, test=sim.test,
                      checks=["temporal_leakage"], n_jobs=1)
    assert no_events["temporal_leakage"].status == SKIP


def test_feature_label_leakage_fails_on_label_plus_noise_and_passes_clean():
    clean = run(simulate(5, n_train=50, n_test=40), ["feature_label_leakage"])["feature_label_leakage"]
    assert clean.status == PASS and clean.value < 0.9
    leak = run(simulate(5, ["label_feature"], n_train=50, n_test=40), ["feature_label_leakage"])["feature_label_leakage"]
    assert leak.status == FAIL and leak.value >= 0.98
    assert leak.evidence["top_features"][0]["feature"] == "meta[3]"


def test_ties_cannot_fake_a_leak_through_row_order():
    """A constant column on a file sorted by label would look perfect with stable ties."""
    labels = np.array([2, 1, 0, 0, 1, 0, 0, 0], float)
    column = np.zeros(8)
    s = pessimistic_scores(column, labels)
    assert np.all(s[labels == 0].min() > s[labels > 0].max())  # relevant rows rank last among ties
    sim = simulate(6, n_train=30, n_test=30)
    order = np.concatenate([sim.test.offsets[i] + np.argsort(-sim.test.labels[sim.test.offsets[i]:sim.test.offsets[i + 1]], kind="stable")
                            for i in range(sim.test.n_queries)])
    feats = {k: v[order] for k, v in sim.test.features.items()}
    feats["meta"] = np.column_stack([feats["meta"], np.ones(len(order))])
    sim.test = RankingSet(sim.test.query_ids, sim.test.offsets, sim.test.candidate_ids[order], sim.test.labels[order],
                          features=feats)
    sim.train = sim.train.with_features({**sim.train.features, "meta": np.column_stack([sim.train.features["meta"], np.ones(sim.train.n_candidates)])})
    res = run(sim, ["feature_label_leakage"])["feature_label_leakage"]
    assert res.status == PASS


def test_event_overlap_is_a_split_overlap():
    sim = simulate(7, n_train=40, n_test=20)
    sim.train_events = Interactions(np.r_[sim.train_events.user_ids, sim.test_events.user_ids[:2]],
                                    np.r_[sim.train_events.item_ids, sim.test_events.item_ids[:2]],
                                    np.r_[sim.train_events.timestamps, sim.test_events.timestamps[:2]])
    res = run(sim, ["split_overlap"])["split_overlap"]
    assert res.status == FAIL and res.evidence["shared_events"] == 2


def test_near_duplicates_find_copies_under_new_ids_with_the_approximate_index_too():
    sim = simulate(8, n_train=40, n_test=30)
    copies = _noisy_copy(sim.train.subset(np.arange(4)), 0.01, 1)
    renamed = RankingSet([f"new-{q}" for q in copies.query_ids], copies.offsets, copies.candidate_ids, copies.labels,
                         features=copies.features, baseline_scores=copies.baseline_scores)
    sim.test = concat_ranking_sets([sim.test, renamed])
    for exact_up_to, search in ((10**6, "exact"), (10, "hnsw")):
        res = run(sim, ["near_duplicates"], policy_extra={"near_duplicates": {"exact_up_to": exact_up_to}})
        nd = res["near_duplicates"]
        assert nd.status == FAIL and nd.evidence["copied_queries"] == 4 and nd.evidence["search"] == search
        assert nd.evidence["same_query_twin_share"] == 0.0    # new ids: only the any-query search sees them


def test_an_honest_input_stronger_than_all_others_warns_and_its_label_made_twin_fails():
    """Simulator seed 0 draws one feature (meta[0]) that carries more than all the others together:
    the soft-leak rule flags it, but the other inputs explain part of it beyond the labels (as they
    do for honest inputs), so it only WARNs. A column of the same strength made from the labels
    (label + noise) is explained by nothing but the labels: FAIL."""
    sim = simulate(0)
    honest = run(sim, ["feature_label_leakage"], model=LambdaMART(n_estimators=60, num_leaves=7, num_threads=1).fit(sim.train))
    check = honest["feature_label_leakage"]
    suspect = check.evidence["suspects"]["meta[0]"]
    assert check.status == WARN and suspect["excess"]["mean"] >= 0.05 and suspect["explained_beyond_label"] > 0.01
    rng = np.random.default_rng(0)
    for rset in (sim.train, sim.test):   # meta[0] replaced by a label + noise column of about its strength
        meta = rset.features["meta"].copy()
        meta[:, 0] = rset.labels + rng.normal(0, 1.0, rset.n_candidates)
        rset.features["meta"] = meta
    leaky = run(sim, ["feature_label_leakage"], model=LambdaMART(n_estimators=60, num_leaves=7, num_threads=1).fit(sim.train))
    leak = leaky["feature_label_leakage"]
    assert leak.status == FAIL and leak.evidence["suspects"]["meta[0]"]["explained_beyond_label"] <= 0.01, leak.evidence
