"""Splits: parts are disjoint and cover the data, makers follow their documented rules, and
fingerprints identify exactly the ids in each part."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrank.data.model import Interactions, RankingSet
from mmrank.data.splits import (
    InteractionSplit,
    RankingSplit,
    Split,
    _part_sizes,
    leave_one_out,
    query_grouped_split,
    temporal_query_split,
    temporal_split,
)
from mmrank.errors import ConfigError, DataError


def ranking_set(n_queries: int = 50, per_query: int = 3, query_ids=None) -> RankingSet:
    qids = query_ids if query_ids is not None else [f"q{i}" for i in range(n_queries)]
    n = len(qids) * per_query
    return RankingSet(
        query_ids=qids,
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"c{j}" for j in range(n)],
        labels=np.arange(n) % 3,
    )


def interactions(users, items, times) -> Interactions:
    return Interactions(users, items, np.asarray(times, dtype=float), np.ones(len(users)))


def assert_partition(split: Split, universe) -> None:
    parts = [set(map(str, ids)) for ids in split.parts.values()]
    assert sum(len(p) for p in parts) == len(set(map(str, universe)))
    assert set().union(*parts) == set(map(str, universe))
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1:])


# -- query-grouped ---------------------------------------------------------------------------
def test_query_grouped_split_partitions_whole_queries():
    rset = ranking_set(50)
    split = query_grouped_split(rset, (0.8, 0.1, 0.1), seed=3)
    assert split.sizes == {"train": 40, "valid": 5, "test": 5}
    assert_partition(split, rset.query_ids)
    train, valid, test = split.apply(rset)
    assert (train.n_queries, valid.n_queries, test.n_queries) == (40, 5, 5)
    assert train.n_candidates + valid.n_candidates + test.n_candidates == rset.n_candidates
    for part, sub in zip(split.parts.values(), (train, valid, test)):
        assert list(sub.query_ids) == list(part)
        q = sub.query(0)
        orig = rset.query(int(np.flatnonzero(rset.query_ids == q.query_id)[0]))
        assert list(q.candidate_ids) == list(orig.candidate_ids)


def test_query_grouped_split_is_deterministic_per_seed():
    rset = ranking_set(50)
    a, b, c = (query_grouped_split(rset, seed=s) for s in (7, 7, 8))
    assert a.fingerprint == b.fingerprint
    assert {k: list(v) for k, v in a.parts.items()} == {k: list(v) for k, v in b.parts.items()}
    assert a.fingerprint["test"] != c.fingerprint["test"] and a.fingerprint["combined"] != c.fingerprint["combined"]


def test_repeated_query_ids_stay_in_one_part():
    rset = ranking_set(query_ids=["a", "b", "a", "c", "b", "d", "e", "f", "g", "h"])
    split = query_grouped_split(rset, (0.5, 0.25, 0.25), seed=1)
    assert_partition(split, rset.query_ids)
    train, valid, test = split.apply(rset)
    assert train.n_queries + valid.n_queries + test.n_queries == 10
    for sub in (train, valid, test):
        for other in (train, valid, test):
            if sub is not other:
                assert not set(sub.query_ids) & set(other.query_ids)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.1, -0.05, -0.05), (float("nan"), 0.5, 0.5)])
def test_bad_fractions_are_config_errors(fractions):
    with pytest.raises(ConfigError):
        query_grouped_split(ranking_set(10), fractions)


def test_part_sizes_add_up_by_largest_remainder():
    assert list(_part_sizes(7, (0.8, 0.1, 0.1))) == [5, 1, 1]
    assert list(_part_sizes(10, (0.8, 0.1, 0.1))) == [8, 1, 1]
    for n in range(0, 40):
        assert _part_sizes(n, (0.7, 0.2, 0.1)).sum() == n


def test_apply_refuses_other_data():
    split = query_grouped_split(ranking_set(20), seed=0)
    with pytest.raises(DataError, match="in no part"):
        split.apply(ranking_set(query_ids=[f"q{i}" for i in range(21)]))
    with pytest.raises(DataError, match="lacks"):
        split.apply(ranking_set(query_ids=[f"q{i}" for i in range(19)]))


# -- fingerprints and JSON -------------------------------------------------------------------
def test_fingerprint_changes_when_one_id_changes():
    split = query_grouped_split(ranking_set(30), seed=0)
    parts = {k: v.copy() for k, v in split.parts.items()}
    parts["valid"][0] = "someone-else"
    changed = RankingSplit(split.method, parts, split.params)
    assert changed.fingerprint["valid"] != split.fingerprint["valid"]
    assert changed.fingerprint["combined"] != split.fingerprint["combined"]
    assert changed.fingerprint["train"] == split.fingerprint["train"]
    assert changed.fingerprint["test"] == split.fingerprint["test"]


def test_json_round_trip_and_tamper_detection(tmp_path):
    split = query_grouped_split(ranking_set(30), seed=2)
    back = Split.from_json(split.to_json())
    assert isinstance(back, RankingSplit) and back.fingerprint == split.fingerprint
    assert back.params == {"fractions": [0.8, 0.1, 0.1], "seed": 2}
    obj = json.loads(split.to_json())
    obj["parts"]["test"][0] = "q999"
    with pytest.raises(DataError, match="do not match its stored fingerprint"):
        Split.from_json(json.dumps(obj))
    with pytest.raises(DataError, match="not a split file"):
        Split.from_json("{not json")
    with pytest.raises(DataError, match="not a split file"):  # a lone surrogate cannot be hashed
        Split.from_json('{"unit": "query", "method": "m", "parts": {"train": ["\\ud800"]}, "fingerprint": {}}')
    path = split.save(tmp_path / "split.json")
    assert Split.load(path).fingerprint == split.fingerprint


# -- temporal ---------------------------------------------------------------------------------
def test_temporal_split_cuts_global_time():
    inter = interactions(["u"] * 10, [str(i) for i in range(10)], [10, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    split = temporal_split(inter, valid_frac=0.2, test_frac=0.2)
    train, valid, test = split.apply(inter)
    assert sorted(train.timestamps) == [1, 2, 3, 4, 5, 6]
    assert sorted(valid.timestamps) == [7, 8] and sorted(test.timestamps) == [9, 10]
    assert split.params["valid_from"] == 7 and split.params["test_from"] == 9
    assert_partition(split, range(10))


def test_temporal_split_sends_ties_to_the_later_part():
    times = [5, 1, 2, 3, 3, 3, 4, 4, 4, 4]  # the 2 latest rows would cut inside the four 4s
    inter = interactions(["u"] * 10, [str(i) for i in range(10)], times)
    split = temporal_split(inter, valid_frac=0.2, test_frac=0.2)
    assert sorted(inter.timestamps[split.parts["test"]]) == [4, 4, 4, 4, 5]
    assert split.sizes["valid"] == 0  # its cut fell on the same timestamp
    split = temporal_split(inter, valid_frac=0.3, test_frac=0.1)
    assert list(inter.timestamps[split.parts["test"]]) == [5]
    assert sorted(inter.timestamps[split.parts["valid"]]) == [4, 4, 4, 4]  # tie pulled the 4th in
    assert sorted(inter.timestamps[split.parts["train"]]) == [1, 2, 3, 3, 3]


def test_temporal_split_rejects_bad_input():
    inter = interactions(["u"] * 3, ["a", "b", "c"], [1, 2, 3])
    with pytest.raises(ConfigError):
        temporal_split(inter, 0.5, 0.5)
    with pytest.raises(DataError, match="NaN"):
        temporal_split(interactions(["u"] * 2, ["a", "b"], [1, np.nan]), 0.1, 0.1)


def test_temporal_query_split_uses_query_times():
    rset = ranking_set(10)
    times = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    split = temporal_query_split(rset, times, valid_frac=0.2, test_frac=0.1)
    assert list(split.parts["test"]) == ["q0"] and list(split.parts["valid"]) == ["q1", "q2"]
    with pytest.raises(DataError, match="one per query"):
        temporal_query_split(rset, times[:5])


def test_temporal_query_split_refuses_a_query_in_two_parts():
    rset = ranking_set(query_ids=["a", "b", "a", "c"])
    with pytest.raises(DataError, match="'a' repeats"):
        temporal_query_split(rset, [0, 1, 3, 2], valid_frac=0.0, test_frac=0.25)


# -- leave-one-out ---------------------------------------------------------------------------
def test_leave_one_out_picks_the_latest_with_row_order_ties():
    #        row:  0     1     2     3     4     5     6     7     8
    users = ["a", "a", "a", "a", "b", "b", "c", "c", "c"]
    times = [10, 30, 20, 30, 1, 2, 7, 7, 7]
    inter = interactions(users, [f"i{r}" for r in range(9)], times)
    split = leave_one_out(inter)
    assert list(split.parts["test"]) == [3, 8]  # a: rows 1 and 3 tie at 30, the later row wins
    assert list(split.parts["valid"]) == [1, 7]
    assert list(split.parts["train"]) == [0, 2, 4, 5, 6]  # b has only 2 events: all train
    assert split.params == {"users_all_train": 1}
    assert_partition(split, range(9))


def test_leave_one_out_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    n = 400
    users = [f"u{k}" for k in rng.integers(0, 40, n)]
    times = rng.integers(0, 30, n).astype(float)  # many ties on purpose
    inter = interactions(users, [str(k) for k in rng.integers(0, 99, n)], times)
    split = leave_one_out(inter)
    assert_partition(split, range(n))
    expected = {"train": [], "valid": [], "test": []}
    for u in set(users):
        rows = sorted((r for r in range(n) if users[r] == u), key=lambda r: (times[r], r))
        if len(rows) < 3:
            expected["train"] += rows
        else:
            expected["train"] += rows[:-2]
            expected["valid"].append(rows[-2])
            expected["test"].append(rows[-1])
    assert {k: list(v) for k, v in split.parts.items()} == {k: sorted(v) for k, v in expected.items()}


def test_interaction_split_is_tied_to_its_data(tmp_path):
    inter = interactions(["a"] * 4, ["w", "x", "y", "z"], [1, 2, 3, 4])
    split = leave_one_out(inter)
    train, valid, test = split.apply(inter)
    assert (list(train.item_ids), list(valid.item_ids), list(test.item_ids)) == (["w", "x"], ["y"], ["z"])
    other = interactions(["a"] * 4, ["w", "x", "y", "Z"], [1, 2, 3, 4])
    with pytest.raises(DataError, match="not the ones the split was made on"):
        split.apply(other)
    assert leave_one_out(other).fingerprint["combined"] != split.fingerprint["combined"]
    assert leave_one_out(other).fingerprint["test"] == split.fingerprint["test"]  # same rows, other data
    back = Split.load(split.save(tmp_path / "loo.json"))
    assert isinstance(back, InteractionSplit) and back.fingerprint == split.fingerprint
    assert list(back.apply(inter)[2].item_ids) == ["z"]


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=200) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["unit", "method", "parts", "params", "fingerprint", "train", "query", "row"]), inner, max_size=5),
    max_leaves=12).map(json.dumps))
def test_from_json_on_anything_is_a_split_or_a_data_error(text):
    try:
        split = Split.from_json(text)
    except DataError:
        return
    assert isinstance(split, (RankingSplit, InteractionSplit))
