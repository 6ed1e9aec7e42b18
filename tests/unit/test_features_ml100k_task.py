"""The ML-100K reranking protocols (per-user and global cuts) on small synthetic ratings: every
promise holds, the checker catches planted leaks, the leakage properties are measured (and can
show a leak), and sampling is seeded."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from mmrank.data.ml100k_rerank_task import RerankTaskConfig, build_rerank_task, user_cuts
from mmrank.data.ml100k_task_checks import read_task_events, task_events, verify_rerank_task, write_task_events
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.errors import ConfigError, DataError


def synthetic(n_users=40, n_items=80, per_user=30, seed=0):
    rng = np.random.default_rng(seed)
    users, items, times, ratings = [], [], [], []
    for u in range(n_users):
        start = rng.uniform(0, 500)  # users arrive at different times, as in MovieLens
        chosen = rng.choice(n_items, size=per_user, replace=False)
        t = np.sort(start + rng.uniform(0, 600, size=per_user).round())
        users += [f"u{u}"] * per_user
        items += [str(i + 1) for i in chosen]
        times += list(t)
        ratings += list(rng.integers(1, 6, size=per_user))
    inter = Interactions(users, items, times, ratings)
    feats = ItemFeatures(
        item_ids=[str(i + 1) for i in range(n_items)],
        features={"text": rng.normal(size=(n_items, 6)), "image": rng.normal(size=(n_items, 3)),
                  "meta": rng.normal(size=(n_items, 4))},
        masks={"image": rng.random(n_items) > 0.2},
        titles=[f"Movie {i + 1}" for i in range(n_items)],
    )
    return inter, feats


CFG = RerankTaskConfig(context_k=4, min_history=3, max_targets=5, n_negatives=6)
GLOBAL = dataclasses.replace(CFG, protocol="global")


@pytest.mark.parametrize("cfg", [CFG, GLOBAL], ids=["per_user", "global"])
def test_every_protocol_promise_holds_on_synthetic_ratings(cfg):
    inter, items = synthetic()
    sets, info = build_rerank_task(inter, items, cfg)
    assert set(sets) == {"train", "valid", "test"}
    assert all(s.n_queries > 0 for s in sets.values())
    assert verify_rerank_task(sets, info, inter, items) == []
    assert info["protocol"] == cfg.protocol
    test = sets["test"]
    assert test.modality_dims == {"text": 6, "image": 3, "meta": 4, "pop": 2}
    assert test.query_feature_dims == {"text": 6, "image": 3, "meta": 4, "history": 2}
    assert set(np.unique(test.labels)) <= {0, 1, 2, 3, 4, 5}
    for q in test:
        assert (q.labels == 0).sum() == CFG.n_negatives
        assert 1 <= (q.labels > 0).sum() <= CFG.max_targets
        assert q.query_text.startswith("Recently rated: Movie ")
    assert info["counts"]["test"]["queries"] == test.n_queries


def test_per_user_cuts_give_every_user_a_test_query_at_their_own_quantile():
    inter, items = synthetic()
    sets, info = build_rerank_task(inter, items, CFG)
    # 40 users with 30 ratings each: everyone qualifies (the global protocol keeps only users active
    # on both sides of one cut).
    assert sets["test"].n_queries == 40
    glob, _ = build_rerank_task(inter, items, GLOBAL)
    assert glob["test"].n_queries < 40
    user = "u7"
    times = np.sort(inter.timestamps[inter.user_ids == user])
    t_valid, t_test = user_cuts(times, CFG)
    assert t_test == times[int(np.floor(0.9 * (len(times) - 1)))]  # numpy's "lower" quantile
    assert info["window_per_query"]["test"][f"{user}@test"] == [t_test, None]
    assert info["window_per_query"]["valid"][f"{user}@valid"] == [t_valid, t_test]
    train_tau, train_end = info["window_per_query"]["train"][f"{user}@train"]
    assert train_tau < train_end == t_valid


def test_leakage_properties_per_user_vs_global():
    inter, items = synthetic()
    _, per_user = build_rerank_task(inter, items, CFG)
    _, glob = build_rerank_task(inter, items, GLOBAL)
    lp, lg = per_user["leakage"], glob["leakage"]
    # neither protocol shows a user's own test period to training
    assert lp["same_user_future_events"] == lg["same_user_future_events"] == 0
    # per-user cuts: users arrive at different times, so other users' later events are seen
    assert not lp["time_consistent"]
    assert lp["test_queries_with_later_seen_events"] > 0.5
    assert lp["held_out_events_in_training_popularity"] > 0
    # global cuts: nothing of the test period is seen
    assert glob["leakage"]["time_consistent"]
    assert lg["test_queries_with_later_seen_events"] == lg["held_out_events_in_training_popularity"] == 0


def test_task_events_show_a_planted_same_user_leak_and_round_trip(tmp_path):
    inter, items = synthetic()
    _, info = build_rerank_task(inter, items, CFG)
    seen, held = task_events(info, inter)
    assert len(held) == sum(1 for u, t in zip(inter.user_ids, inter.timestamps)
                            if t >= info["window_per_query"]["test"][f"{u}@test"][0])
    # every seen event precedes its own user's first held-out event
    first_held = {u: min(t for v, t in zip(held.user_ids, held.timestamps) if v == u) for u in set(held.user_ids)}
    assert all(t < first_held[u] for u, t in zip(seen.user_ids, seen.timestamps))
    # a validation window stretched past the test cut is seen as a same-user leak
    leaked = copy.deepcopy(info)
    qid = next(iter(leaked["window_per_query"]["valid"]))
    leaked["window_per_query"]["valid"][qid][1] = float(inter.timestamps.max()) + 1
    from mmrank.data.ml100k_task_checks import leakage_properties

    assert leakage_properties(leaked, inter)["same_user_future_events"] > 0
    write_task_events(tmp_path, seen, held)
    back_seen, back_held = read_task_events(tmp_path)
    assert back_seen.fingerprint() == seen.fingerprint() and len(back_held) == len(held)
    assert np.array_equal(back_seen.ratings, seen.ratings)


def test_checker_catches_planted_leaks():
    inter, items = synthetic()
    sets, info = build_rerank_task(inter, items, CFG)

    # 1. a future movie slipped into a test query's context
    leaked = copy.deepcopy(info)
    qid = sets["test"].query_ids[0]
    user = qid.rsplit("@", 1)[0]
    future = [i for u, i, t in zip(inter.user_ids, inter.item_ids, inter.timestamps)
              if u == user and t >= info["window_per_query"]["test"][qid][0]][0]
    leaked["context_item_ids"]["test"][qid] = [future] + leaked["context_item_ids"]["test"][qid][1:]
    assert any("context" in p for p in verify_rerank_task(sets, leaked, inter, items))

    # 1b. a test window moved earlier than the user's own test cut
    moved = copy.deepcopy(info)
    moved["window_per_query"]["test"][qid][0] -= 1000
    assert any("window" in p for p in verify_rerank_task(sets, moved, inter, items))

    # 2. popularity counted over all time, test period included
    all_counts = {i: c for i, c in zip(*np.unique(inter.item_ids, return_counts=True))}
    pop = sets["test"].features["pop"].copy()
    pop[:, 0] = np.log1p([all_counts.get(c, 0) for c in sets["test"].candidate_ids])
    bad = dict(sets)
    bad["test"] = sets["test"].with_features({**sets["test"].features, "pop": pop})
    assert any("pop counts" in p for p in verify_rerank_task(bad, info, inter, items))

    # 3. a rated movie used as a negative
    labels = sets["test"].labels.copy()
    labels[np.flatnonzero(labels > 0)[0]] = 0
    bad["test"] = sets["test"].with_labels(labels)
    problems = verify_rerank_task(bad, info, inter, items)
    assert any("label-0 candidate was rated" in p for p in problems)


def test_sampling_is_seeded_and_uniform_mode_differs():
    inter, items = synthetic()
    a, _ = build_rerank_task(inter, items, CFG)
    b, _ = build_rerank_task(inter, items, CFG)
    assert a["test"].fingerprint() == b["test"].fingerprint()
    assert np.array_equal(a["train"].features["pop"], b["train"].features["pop"])
    other = RerankTaskConfig(**{**CFG.__dict__, "seed": 1})
    c, _ = build_rerank_task(inter, items, other)
    assert c["test"].fingerprint() != a["test"].fingerprint()
    uni, info = build_rerank_task(inter, items, RerankTaskConfig(**{**CFG.__dict__, "negatives": "uniform"}))
    assert verify_rerank_task(uni, info, inter, items) == []


def test_bad_settings_and_unknown_items_are_user_errors():
    inter, items = synthetic()
    with pytest.raises(ConfigError):
        build_rerank_task(inter, items, RerankTaskConfig(valid_quantile=0.9, test_quantile=0.8))
    with pytest.raises(ConfigError):
        build_rerank_task(inter, items, RerankTaskConfig(negatives="hard"))
    with pytest.raises(ConfigError, match="protocol"):
        build_rerank_task(inter, items, RerankTaskConfig(protocol="random"))
    fewer = ItemFeatures(items.item_ids[:10], {k: v[:10] for k, v in items.features.items()})
    with pytest.raises(DataError, match="no item features"):
        build_rerank_task(inter, fewer, CFG)


def test_the_audit_judges_the_task_events_temporal_leakage_pass_and_a_planted_fail():
    from mmrank.audit import audit
    from mmrank.models.baselines import HeuristicBaseline

    inter, items = synthetic()
    sets, info = build_rerank_task(inter, items, CFG)
    model = HeuristicBaseline(query_feature="text")

    def judged(events_info):
        seen, held = task_events(events_info, inter)
        report = audit(model, None, train=sets["train"], test=sets["test"], train_interactions=seen,
                       test_interactions=held, checks=["temporal_leakage"])
        return report["temporal_leakage"], report.verdict

    check, _ = judged(info)
    assert check.status == "PASS" and check.evidence["test_users"] == sets["test"].n_queries
    leaked = copy.deepcopy(info)
    for window in leaked["window_per_query"]["valid"].values():  # validation targets run into the test period
        window[1] = float(inter.timestamps.max()) + 1
    check, verdict = judged(leaked)
    assert check.status == "FAIL" and check.evidence["users_with_future_training"] > 0 and verdict == "NO_GO"
