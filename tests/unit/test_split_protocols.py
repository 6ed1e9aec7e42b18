"""Honest splits when time is missing: a data set's own split (MMRec x_label), explicit target
files, a random holdout that says so, leave-one-out in sequence order — and every output
(metrics.json, fingerprint, audit, report) naming the protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmrank.audit.recommender_runner import audit_recommender
from mmrank.config import config_from_dict
from mmrank.data.model import Interactions
from mmrank.errors import ConfigError, DataError
from mmrank.sequential.baselines import PopularityRanker
from mmrank.sequential.data import Histories, IdVocab, SequenceSplit, Targets
from mmrank.sequential.dataset import load_sequence_data
from mmrank.sequential.evaluation import evaluate_stage
from mmrank.sequential.run import train_sequential

N_USERS, GROUPS, PER_GROUP = 40, 4, 8


def x_label_rows() -> list[tuple[int, int, int]]:
    """(user, item, x_label): each user reads its group's items in a cycle; 5 train, 1 valid, 2 test."""
    rows = []
    for u in range(N_USERS):
        g = u % GROUPS
        for j in range(8):
            rows.append((u, g * PER_GROUP + (u + j) % PER_GROUP, 0 if j < 5 else (1 if j == 5 else 2)))
    return rows


def write_mmrec(folder: Path, rows=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows or x_label_rows()
    (folder / f"{folder.name}.inter").write_text(
        "userID\titemID\trating\tx_label\n" + "".join(f"{u}\t{i}\t5\t{x}\n" for u, i, x in rows))
    return folder


def config(path, kind="popularity", **data) -> object:
    model = {"kind": kind, "params": {"hidden": 8, "layers": 1, "heads": 1, "max_len": 8} if kind == "sasrec" else {}}
    return config_from_dict({"task": "sequential", "data": {"path": str(path), **data}, "model": model,
                             "train": {"epochs": 1, "batch_size": 16, "threads": 1, "progress": False},
                             "evaluate": {"sampled_negatives": 0}})


def test_mmrec_without_timestamps_trains_on_its_own_split_and_every_output_says_so(tmp_path):
    torch.set_num_threads(1)
    data = write_mmrec(tmp_path / "music")
    seq = load_sequence_data(config(data).data)
    labels = np.array([x for _, _, x in x_label_rows()])
    for k, part in enumerate(("train", "valid", "test")):
        assert len(seq.parts[part]) == int((labels == k).sum())  # the file's own parts, untouched
    assert (seq.split.test_targets.counts() == 2).all() and (seq.split.valid_targets.counts() == 1).all()
    metrics = train_sequential(config(data, "sasrec"), tmp_path / "run")
    split = metrics["split"]
    assert split["name"] == "given" and split["order"] == "row" and split["time_checks"] is False
    assert "own split (x_label" in metrics["protocol"] and "leave-one-out in time" not in json.dumps(metrics)
    assert "mean over them" in metrics["protocol"] and metrics["test"]["users"] == N_USERS
    fingerprint = json.loads((tmp_path / "run" / "fingerprint.json").read_text())
    assert fingerprint["split"]["method"] == "given" and fingerprint["data"]["order"] == "row"
    pred = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert set(pred[pred.stage == "test"].n_targets) == {2}
    report = audit_recommender(tmp_path / "run", "popularity")
    temporal = report["temporal_leakage"]
    assert temporal.status == "SKIP"
    assert "no timestamps" in temporal.evidence["reason"] and "given" in temporal.evidence["reason"]
    assert report.meta["split"]["name"] == "given" and "one or more held-out items" in report.meta["unit"]
    assert any("temporal_leakage" in r and "no timestamps" in r for r in report.reasons)
    # the audit reused the run's per-user test metrics; recomputing them gives the same numbers
    import shutil

    assert report.meta["model_metrics"].startswith("read from the run's predictions.parquet")
    shutil.copytree(tmp_path / "run", tmp_path / "run_copy")
    (tmp_path / "run_copy" / "predictions.parquet").unlink()
    again = audit_recommender(tmp_path / "run_copy", "popularity")
    assert again.meta["model_metrics"].startswith("recomputed")
    assert again["significance"].evidence["model_mean"] == report["significance"].evidence["model_mean"]
    assert again["significance"].value == report["significance"].value
    from mmrank.report import write_report

    report.save(tmp_path / "audit" / "audit.json")
    html = write_report(tmp_path / "audit", report.to_dict()).read_text()
    assert "own split (x_label" in html and "no timestamps" in html


def test_several_targets_are_each_ranked_without_the_others_known_answer():
    """User 0 saw item 1; its test targets are items 2 and 3. Scores: 4 > 2 > 3 > 1. Target 2
    competes with item 4 only (3 is the other target, 1 is seen): rank 2. Target 3 likewise:
    rank 2 (were item 2 left in, 3 would rank third). NDCG@10 = mean(1/log2 3, 1/log2 3)."""
    items = IdVocab(np.array(["1", "2", "3", "4"], dtype=object), 1, "item")
    users = IdVocab(np.array(["u"], dtype=object), 0, "user")
    split = SequenceSplit(users, items, Histories(np.array([0, 1]), np.array([1])), np.array([0]),
                          Targets(np.array([0, 2]), np.array([2, 3])), np.zeros(5, dtype=bool))
    ranker = PopularityRanker()
    ranker.items_, ranker.users_ = items, users
    ranker.item_scores_ = np.array([-np.inf, 1.0, 3.0, 2.0, 4.0])
    out = evaluate_stage(ranker, split, "test", ks=(1, 10))
    assert out["users"].tolist() == [0]
    assert out["rank"].tolist() == [2.0]
    assert out["ndcg@10"][0] == pytest.approx(1 / math.log2(3)) and out["hr@1"][0] == 0.0


def test_several_targets_give_the_same_bits_with_two_chunk_workers():
    """Users with 1-3 test targets, chunks of 4 rows (a user's rows cut across chunks), scores
    with ties: the evaluation with two torch threads (two chunk workers) equals the one-thread
    evaluation bit for bit, full ranking and sampled."""
    rng = np.random.default_rng(3)
    n_users, n_items = 30, 40
    hist = [rng.choice(np.arange(1, n_items + 1), 3, replace=False) for _ in range(n_users)]
    tgt = [rng.choice(np.setdiff1d(np.arange(1, n_items + 1), h), 1 + u % 3, replace=False) for u, h in enumerate(hist)]
    split = SequenceSplit(IdVocab(np.array([f"u{u}" for u in range(n_users)], dtype=object), 0, "user"),
                          IdVocab(np.array([str(i) for i in range(1, n_items + 1)], dtype=object), 1, "item"),
                          Histories(np.arange(0, 3 * n_users + 1, 3), np.concatenate(hist)), np.zeros(n_users, dtype=np.int64),
                          Targets(np.concatenate([[0], np.cumsum([len(t) for t in tgt])]), np.concatenate(tgt)),
                          np.zeros(n_items + 1, dtype=bool))
    ranker = PopularityRanker()
    ranker.items_, ranker.users_ = split.items, split.users
    ranker.item_scores_ = np.concatenate([[-np.inf], rng.integers(0, 8, n_items).astype(float)])  # ties
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(evaluate_stage(ranker, split, "test", ks=(1, 10), sampled_negatives=5, chunk_size=4))
    finally:
        torch.set_num_threads(threads)
    one, two = runs
    assert one.keys() == two.keys() and len(one["users"]) == n_users
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    assert len(np.unique(one["rank"])) > 5  # means over several targets: not a constant


def test_a_table_without_time_gets_a_random_holdout_that_says_so(tmp_path, capsys):
    rows = "".join(f"u{u},i{(u + j) % 9}\n" for u in range(12) for j in range(5))
    (tmp_path / "plays.csv").write_text("user_id,item_id\n" + rows)
    metrics = train_sequential(config(tmp_path / "plays.csv"), tmp_path / "run")
    assert metrics["split"]["name"] == "random" and "not a next-item protocol" in metrics["protocol"]
    assert any("no timestamp column" in n for n in metrics["notices"])
    assert metrics["split"]["time_checks"] is False and metrics["test"]["users"] == 12
    with pytest.raises(ConfigError, match="row order is not time"):
        load_sequence_data(config(tmp_path / "plays.csv", split="leave_one_out").data)
    # the same seed, the same split; another seed, another split
    a, b = (load_sequence_data(config(tmp_path / "plays.csv", split_seed=s).data) for s in (0, 1))
    again = load_sequence_data(config(tmp_path / "plays.csv").data)
    assert a.split_fingerprint == again.split_fingerprint != b.split_fingerprint


def test_sasrec_text_trains_directly_leave_one_out_in_sequence_order(tmp_path):
    lines = [f"u{u} " + " ".join(f"i{(u + j) % 9}" for j in range(6)) for u in range(10)]
    (tmp_path / "Beauty.txt").write_text("\n".join(lines) + "\n")
    seq = load_sequence_data(config(tmp_path / "Beauty.txt").data)
    assert seq.protocol.name == "leave_one_out" and "sequence order" in seq.protocol.description
    assert seq.protocol.time_checks is False
    last = {ln.split()[0]: ln.split()[-1] for ln in lines}
    s = seq.split
    assert {s.users.ids[u]: s.items.ids[s.test_target[u] - 1] for u in range(len(s.users))} == last
    metrics = train_sequential(config(tmp_path / "Beauty.txt"), tmp_path / "run")
    assert metrics["split"]["name"] == "leave_one_out" and metrics["test"]["users"] == 10


def test_explicit_target_files_reproduce_a_given_split_exactly(tmp_path):
    """The same split given two ways — x_label in one file, or a training file plus valid/test
    target files (as published splits ship) — gives the same parts and the same metrics."""
    rows = x_label_rows()
    write_mmrec(tmp_path / "given", rows)
    for name, k in (("train", 0), ("valid", 1), ("test", 2)):
        (tmp_path / f"{name}.csv").write_text("user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i, x in rows if x == k))
    cfg = config(tmp_path / "train.csv", valid_targets=str(tmp_path / "valid.csv"), test_targets=str(tmp_path / "test.csv"))
    by_targets, by_label = load_sequence_data(cfg.data), load_sequence_data(config(tmp_path / "given").data)
    assert by_targets.protocol.name == "targets" and by_label.protocol.name == "given"
    for part in ("train", "valid", "test"):
        pairs = lambda d: sorted(zip(d.parts[part].user_ids, d.parts[part].item_ids))  # noqa: E731
        assert pairs(by_targets) == pairs(by_label)
    m_targets = train_sequential(cfg, tmp_path / "run_targets")
    m_label = train_sequential(config(tmp_path / "given"), tmp_path / "run_given")
    for stage in ("valid", "test"):
        assert {k: v for k, v in m_targets[stage].items() if k != "eval_seconds"} == \
               {k: v for k, v in m_label[stage].items() if k != "eval_seconds"}
    p1, p2 = (pd.read_parquet(tmp_path / r / "predictions.parquet").sort_values(["stage", "user_id"]).reset_index(drop=True)
              for r in ("run_targets", "run_given"))
    pd.testing.assert_frame_equal(p1, p2)
    with pytest.raises(ConfigError, match="needs data.test_targets"):
        config(tmp_path / "train.csv", valid_targets=str(tmp_path / "valid.csv"))


def test_evaluation_users_without_training_events_are_left_out_and_counted(tmp_path):
    rows = x_label_rows() + [(99, 0, 2)]  # user 99 has only a test event
    seq = load_sequence_data(config(write_mmrec(tmp_path / "d", rows)).data)
    assert seq.protocol.params["left_out_without_training_events"] == {"valid": 0, "test": 1}
    assert any("no training event" in n for n in seq.notices) and "99" not in set(seq.split.users.ids)


def test_most_recent_refuses_events_without_times(tmp_path):
    write_mmrec(tmp_path / "d")
    with pytest.raises(DataError, match="most_recent needs event timestamps"):
        train_sequential(config(tmp_path / "d", "most_recent"), tmp_path / "run")


def test_leave_one_out_on_timed_data_is_unchanged(tmp_path):
    """Real timestamps: leave-one-out in time, temporal checks apply (the old behaviour)."""
    inter = Interactions(["a"] * 4 + ["b"] * 3, ["1", "2", "3", "4", "2", "3", "1"], [4, 3, 2, 1, 1, 2, 3])
    d = tmp_path / "t"
    d.mkdir()
    (d / "t.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{int(t)}\n" for u, i, t in zip(inter.user_ids, inter.item_ids, inter.timestamps)))
    seq = load_sequence_data(d)
    assert seq.protocol.name == "leave_one_out" and seq.protocol.description.startswith("leave-one-out in time")
    assert seq.protocol.time_checks and seq.protocol.time_checks_reason is None
    assert seq.split.items.decode(seq.split.test_target).tolist() == ["1", "1"]


@pytest.mark.parametrize("fmt,name", [("recbole", "rb"), ("mmrec", "mm"), ("movielens", "ml"), ("table", "d.csv"),
                                      ("table", "d.parquet"), ("sasrec", "d.txt")])
def test_every_interaction_format_trains_directly_to_the_same_numbers(tmp_path, fmt, name):
    """The same timed events written in each format: popularity trained from each holds out the
    same items and scores the same (SASRec text keeps only the order: leave-one-out in it)."""
    from mmrank.data.formats import write_interactions
    from mmrank.data.interaction_data import InteractionData
    from mmrank.data.validate import ReadReport

    rng = np.random.default_rng(0)
    users = np.repeat([f"u{u}" for u in range(15)], 6)
    items = np.array([f"i{i}" for i in rng.integers(0, 10, len(users))], dtype=object)
    times = np.tile(np.arange(6, dtype=np.float64), 15) + 100
    inter = Interactions(users, items, times, np.full(len(users), 4.0))
    data = InteractionData(inter, None, ReadReport("gen"), "table")
    write_interactions(data, tmp_path / "ref.csv")
    write_interactions(data, tmp_path / name, fmt)
    path = tmp_path / name / "u.data" if fmt == "movielens" else tmp_path / name
    reference = train_sequential(config(tmp_path / "ref.csv"), tmp_path / "run_ref")
    metrics = train_sequential(config(path), tmp_path / "run")
    assert metrics["split"]["name"] == "leave_one_out"
    assert metrics["split"]["order"] == ("sequence" if fmt == "sasrec" else "time")
    assert metrics["test"]["ndcg@10"] == reference["test"]["ndcg@10"] and metrics["test"]["users"] == 15


def test_target_files_whose_events_are_also_in_the_training_file_are_flagged(tmp_path):
    rows = x_label_rows()
    (tmp_path / "all.csv").write_text("user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i, _ in rows))
    (tmp_path / "test.csv").write_text("user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i, x in rows if x == 2))
    seq = load_sequence_data(config(tmp_path / "all.csv", test_targets=str(tmp_path / "test.csv")).data)
    assert seq.protocol.params["held_out_pairs_also_in_training"] == 2 * N_USERS
    assert any("leak" in n for n in seq.notices)
