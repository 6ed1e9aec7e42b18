"""Reranking queries with cut times: events for temporal_leakage, the temporal re-split of
split_sensitivity, the required time checks, and the CLI's --interactions/--task wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrank.audit import FAIL, PASS, WARN, audit
from mmrank.audit.timed_queries import QueryTimes, query_events, read_query_times, task_beside
from mmrank.data.model import Interactions, RankingSet
from mmrank.errors import ConfigError
from mmrank.models.baselines import LambdaMART

FAST = {"significance": {"bootstrap_resamples": 500, "permutation_resamples": 500}}


def drifting_task(n_users: int = 60, per_query: int = 10, seed: int = 0):
    """Users with one query per period (cut times 100 / 200 / 300 for train / valid / test). The
    label follows feature 0 in the first half of time and feature 1 in the second: a model that
    trains on the late period looks better on late queries than one that could not."""
    rng = np.random.default_rng(seed)
    sets, cuts, events = {}, {}, ([], [], [])
    for split, cut in (("train", 100.0), ("valid", 200.0), ("test", 300.0)):
        n = n_users * per_query
        x = rng.normal(size=(n, 2))
        relevance = x[:, 1 if cut > 150 else 0] + rng.normal(0, 0.6, n)   # noisy: no feature copies the label
        labels = (relevance > 0.3).astype(float) + (relevance > 1.0)
        qids = [f"u{u}@{split}" for u in range(n_users)]
        cands = [f"i{split}{j}" for j in range(n)]
        sets[split] = RankingSet(qids, np.arange(0, n + 1, per_query), cands, labels, features={"f": x})
        cuts[split] = {q: cut for q in qids}
        for j in np.flatnonzero(labels > 0):  # the rating behind each positive, just after the cut
            events[0].append(f"u{j // per_query}")
            events[1].append(cands[j])
            events[2].append(cut + 1.0 + j % 7)
    users = {s: {q: q.split("@")[0] for q in c} for s, c in cuts.items()}
    return sets, QueryTimes(users, cuts), Interactions(*events)


def lambdamart(train, valid=None):
    return LambdaMART(n_estimators=30, num_leaves=7, num_threads=1).fit(train, valid)


def test_honest_time_split_passes_both_time_checks_and_sets_the_global_cut():
    sets, times, events = drifting_task()
    res = audit(lambdamart(sets["train"], sets["valid"]), None, train=sets["train"], valid=sets["valid"],
                test=sets["test"], query_times=times, interactions=events, policy=FAST, n_jobs=1,
                checks=["temporal_leakage", "split_sensitivity"])
    tl = res["temporal_leakage"]
    assert tl.status == PASS and tl.evidence["global_cut"] == 300.0 and tl.evidence["training_events_after_cut"] == 0
    # training events: the train + valid positives at their rating times, plus one per query at its cut
    n_pos = int((sets["train"].labels > 0).sum() + (sets["valid"].labels > 0).sum())
    assert tl.evidence["training_events"] == n_pos + 120 and tl.evidence["test_events"] == int((sets["test"].labels > 0).sum())
    assert res["split_sensitivity"].status == PASS and res.meta["query_times"]["temporal_split"]


def test_a_training_target_rated_after_the_test_cut_fails():
    sets, times, events = drifting_task()
    j = int(np.flatnonzero(sets["train"].labels > 0)[0])
    ts = events.timestamps.copy()
    ts[events.item_ids == sets["train"].candidate_ids[j]] = 350.0   # that training target lies in the test period
    res = audit(lambdamart(sets["train"]), None, train=sets["train"], test=sets["test"], query_times=times,
                interactions=Interactions(events.user_ids, events.item_ids, ts), policy=FAST, n_jobs=1,
                checks=["temporal_leakage"])
    check = res["temporal_leakage"]
    assert check.status == FAIL and res.verdict == "NO_GO"
    assert check.evidence["training_events_after_cut"] == 1 and check.evidence["users_with_future_training"] == 1


def test_a_split_that_is_not_temporal_is_compared_with_a_temporal_resplit():
    """Audited split: queries of both periods split at random, so the model has seen the later
    regime. A temporal re-split (the latest queries held out) shows what a model trained on the
    past alone gets on the future — far less: WARN, quote the temporal one."""
    from mmrank.data.model import concat_ranking_sets

    sets, _, _ = drifting_task(n_users=80)
    early, late = sets["train"], sets["test"]
    train = concat_ranking_sets([early.subset(range(40)), late.subset(range(40))])
    test = concat_ranking_sets([early.subset(range(40, 80)), late.subset(range(40, 80))])
    cut = {q: (100.0 if q.endswith("@train") else 300.0) for q in [*train.query_ids, *test.query_ids]}
    times = QueryTimes({s: {q: q.split("@")[0] for q in r.query_ids} for s, r in (("train", train), ("test", test))},
                       {s: {q: cut[q] for q in r.query_ids} for s, r in (("train", train), ("test", test))})
    assert not times.is_temporal()
    res = audit(lambdamart(train), None, train=train, test=test, query_times=times, policy=FAST, n_jobs=1,
                make_model=lambda: LambdaMART(n_estimators=30, num_leaves=7, num_threads=1), checks=["split_sensitivity"])
    check = res["split_sensitivity"]
    assert check.evidence["audited_split"].startswith("not temporal")
    assert check.evidence["temporal_resplit"] < check.evidence["audited"] - 0.1
    assert check.status == WARN, check.evidence


def test_cut_times_without_interactions_make_the_time_check_a_required_skip():
    sets, times, _ = drifting_task()
    res = audit(lambdamart(sets["train"]), None, train=sets["train"], test=sets["test"], query_times=times,
                policy=FAST, n_jobs=1, checks=["temporal_leakage", "split_sensitivity"])
    assert res["split_sensitivity"].status == PASS                     # cut times alone show the split is temporal
    assert res["temporal_leakage"].status == "SKIP"
    assert any(r.startswith("not checked: temporal_leakage") and "--interactions" in r for r in res.reasons)


def test_interactions_the_task_was_not_built_from_are_refused():
    sets, times, events = drifting_task()
    times.interactions_fingerprint = "not-this-one"
    with pytest.raises(ConfigError, match="not the ones the task was built from"):
        query_events(times, sets, events)


def test_task_json_is_found_beside_the_test_file(tmp_path):
    (tmp_path / "task.json").write_text(json.dumps({"cut_time_per_query": {"test": {"7@test": 5.0}},
                                                    "interactions": {"fingerprint": "abc"}}))
    (tmp_path / "test.parquet").write_bytes(b"")
    found = task_beside(tmp_path / "test.parquet")
    times = read_query_times(found)
    assert times.users["test"]["7@test"] == "7" and times.global_test_cut() == 5.0 and times.interactions_fingerprint == "abc"
    (tmp_path / "task.json").write_text("{}")
    assert task_beside(tmp_path / "test.parquet") is None


def test_task_json_with_per_query_windows_is_read_like_the_older_cut_times(tmp_path):
    """`mmrank data features` now writes window_per_query ([tau, end], end null = open); the audit
    reads it exactly like the cut_time_per_query of earlier task.json files."""
    (tmp_path / "task.json").write_text(json.dumps({"window_per_query": {"valid": {"7@valid": [3.0, 5.0]},
                                                                         "test": {"7@test": [5.0, None], "8@test": [6.0, None]}}}))
    (tmp_path / "test.parquet").write_bytes(b"")
    times = read_query_times(task_beside(tmp_path / "test.parquet"))
    assert times.cuts == {"valid": {"7@valid": 3.0}, "test": {"7@test": 5.0, "8@test": 6.0}}
    assert times.users["test"]["8@test"] == "8" and times.global_test_cut() is None


def test_cli_wires_the_task_and_the_ratings_of_a_time_split_task(tmp_path):
    """`mmrank audit` finds task.json beside --test and reads --interactions: the time checks run
    (and are required); --interactions for files without cut times is one clear line, exit 2."""
    from typer.testing import CliRunner

    from mmrank.cli import app
    from mmrank.data.formats import write_ranking

    sets, times, events = drifting_task(n_users=30)
    for split, rset in sets.items():
        write_ranking(rset, tmp_path / f"{split}.parquet")
    (tmp_path / "task.json").write_text(json.dumps({"cut_time_per_query": times.cuts}))
    (tmp_path / "ratings").mkdir()
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"{u}\t{i}\t1\t{t:.0f}" for u, i, t in zip(events.user_ids, events.item_ids, events.timestamps)]
    (tmp_path / "ratings" / "ratings.inter").write_text("\n".join(rows) + "\n")
    (tmp_path / "policy.yaml").write_text("significance: {bootstrap_resamples: 300, permutation_resamples: 300}\n")
    (tmp_path / "small.yaml").write_text("model: {kind: lambdamart, params: {n_estimators: 30, num_leaves: 7, num_threads: 1}}\n")
    files = ["--train", str(tmp_path / "train.parquet"), "--valid", str(tmp_path / "valid.parquet"),
             "--test", str(tmp_path / "test.parquet"), "--model", "lambdamart", "--config", str(tmp_path / "small.yaml"),
             "--baseline", "lambdamart", "--policy", str(tmp_path / "policy.yaml"), "--jobs", "1"]
    result = CliRunner().invoke(app, ["audit", *files, "--interactions", str(tmp_path / "ratings"), "--out", str(tmp_path / "a")])
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    by = {c["name"]: c for c in report["checks"]}
    assert result.exit_code in (0, 3), result.output
    assert by["temporal_leakage"]["status"] == "PASS" and by["temporal_leakage"]["evidence"]["global_cut"] == 300.0
    assert by["split_sensitivity"]["status"] == "PASS" and report["meta"]["files"]["task"].endswith("task.json")
    (tmp_path / "task.json").unlink()
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "mmrank", "audit", *files, "--interactions", str(tmp_path / "ratings"),
                              "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert refused.returncode == 2 and "--task" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
