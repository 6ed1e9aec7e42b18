"""Provenance: a run's splits recorded as hashes, and new data compared with what it trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrank.data.formats import load_ranking
from mmrank.data.model import Interactions, RankingSet
from mmrank.errors import DataError
from mmrank.provenance import (
    META,
    TENSORS,
    overlap_with_training,
    read_provenance,
    refuse_if_trained_on,
    write_provenance,
)
from tests.conftest import make_toy_ranking_set


def renamed(rset: RankingSet, prefix: str) -> RankingSet:
    """The same rows under new query and candidate ids."""
    return RankingSet(query_ids=[prefix + q for q in rset.query_ids], offsets=rset.offsets,
                      candidate_ids=[prefix + c for c in rset.candidate_ids], labels=rset.labels,
                      features=rset.features)


def events(users, items, times) -> Interactions:
    return Interactions(np.array(users), np.array(items), np.array(times, float))


def test_round_trip_is_hashes_in_safetensors_and_json(tmp_path):
    train, test = make_toy_ranking_set(seed=0), make_toy_ranking_set(seed=1)
    inter = events(["u1", "u1", "u2"], ["a", "b", "a"], [1, 2, 3])
    write_provenance(tmp_path, {"train": train, "test": test, "valid": None, "events": inter})
    meta = json.loads((tmp_path / META).read_text())
    assert meta["splits"]["train"] == {"kind": "ranking", "sizes": {"queries": 20, "candidates": 160}}
    assert meta["splits"]["events"]["kind"] == "interactions" and "valid" not in meta["splits"]
    assert (tmp_path / TENSORS).read_bytes()[8:9] == b"{"       # safetensors: 8-byte length, JSON header
    prov = read_provenance(tmp_path)
    assert set(prov.splits) == {"train", "test", "events"}
    assert prov.splits["train"].hashes["pair"].shape == (160,) and prov.splits["train"].hashes["query_id"].shape == (20,)
    assert prov.splits["train"].same_rows_as(train) and not prov.splits["train"].same_rows_as(test)
    assert read_provenance(tmp_path / "nothing") is None


def test_test_file_that_was_trained_on_is_found_and_refused(tmp_path):
    train, test = make_toy_ranking_set(seed=0), make_toy_ranking_set(seed=1)
    test = renamed(test, "t")  # disjoint ids, random features: a clean test set
    write_provenance(tmp_path, {"train": train, "test": test})
    clean = overlap_with_training(tmp_path, test)
    assert not clean.trained_on and clean.total == 20
    assert refuse_if_trained_on(tmp_path, test) is not None          # no overlap: returned, not raised
    # the test set *is* the training set (the "trained on S5, audited on S5")
    with pytest.raises(DataError) as e:
        refuse_if_trained_on(tmp_path, train, path="train.txt")
    msg = str(e.value)
    assert msg.startswith("train.txt: ") and "20 of 20 queries" in msg and "--allow-trained-on" in msg and "\n" not in msg
    allowed = refuse_if_trained_on(tmp_path, train, allow=True)
    assert allowed.trained_on and allowed.per_split["train"]["counts"]["query_ids"] == 20
    assert allowed.per_split["train"]["counts"]["query_candidate_pairs"] == 160


def test_copies_under_new_ids_and_partial_copies(tmp_path):
    train = make_toy_ranking_set(seed=0)
    write_provenance(tmp_path, {"train": train})
    copies = renamed(train.subset(range(5)), "new")                 # 5 queries, new ids, same rows
    ov = overlap_with_training(tmp_path, copies)
    assert ov.affected == 5 and ov.per_split["train"]["counts"]["query_ids"] == 0
    assert ov.per_split["train"]["counts"]["query_contents"] == 5
    # a query with 3 of 8 rows copied: rows counted, query not "trained on" (below half)
    fresh = renamed(make_toy_ranking_set(n_queries=1, seed=5), "f")
    feats = {k: v.copy() for k, v in fresh.features.items()}
    for k in feats:
        feats[k][:3] = train.features[k][:3]
    partial = fresh.with_features(feats)
    ov = overlap_with_training(tmp_path, partial)
    assert ov.per_split["train"]["counts"]["candidate_rows"] == 3 and not ov.trained_on
    for k in feats:
        feats[k][:4] = train.features[k][10:14]                       # 4 of 8 from one other query
    ov = overlap_with_training(tmp_path, fresh.with_features(feats))
    assert ov.trained_on and ov.per_split["train"]["counts"]["mostly_copied_queries"] == 1


def test_interactions_and_kinds_that_cannot_be_compared(tmp_path):
    write_provenance(tmp_path, {"train": events(["u1", "u1", "u2"], ["a", "b", "a"], [1, 2, 3]),
                                "valid": make_toy_ranking_set(seed=0)})
    test = events(["u1", "u2", "u3"], ["c", "a", "a"], [9, 9, 9])     # u2-a was trained on (earlier time)
    ov = overlap_with_training(tmp_path, test)
    assert ov.affected == 1 and ov.examples == ["u2\ta"] and ov.not_comparable == ["valid"]
    assert ov.per_split["train"]["counts"] == {"events": 0, "user_items": 1}


def test_real_mq2008_fold(mq2008_folds, tmp_path):
    fold = mq2008_folds / "Fold1"
    train, valid, test = (load_ranking(fold / f) for f in ("train.txt", "vali.txt", "test.txt"))
    write_provenance(tmp_path, {"train": train, "valid": valid, "test": test})
    assert not overlap_with_training(tmp_path, test).trained_on       # the published folds are disjoint
    assert overlap_with_training(tmp_path, test).per_split["train"]["counts"]["candidate_rows"] == 0
    ov = overlap_with_training(tmp_path, valid)
    assert ov.affected == valid.n_queries and list(ov.per_split) == ["train", "valid"]
    assert ov.per_split["train"]["affected"] == 0
