"""The public per-record JSONL parse (``parse_query_record``): its contract, and the columnar fast
path agreeing bit for bit with the per-candidate path (property tests), messages included."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrank.data import io_jsonl
from mmrank.data.formats import BadRecord
from mmrank.data.io_jsonl import parse_query_record, read_jsonl
from mmrank.data.model import RankingSet
from mmrank.data.validate import QueryChecker
from mmrank.errors import DataError
from mmrank.serve.records import ranking_set_of

PROPERTY = settings(max_examples=int(os.environ.get("MMRANK_FUZZ_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_identical(a: RankingSet, b: RankingSet) -> None:
    """Same values, dtypes, shapes and bits (NaN-safe), same dict key order."""
    for name in ("query_ids", "offsets", "candidate_ids", "domains", "query_texts"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.tolist() == y.tolist(), name
    for name in ("labels", "baseline_scores"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), name
    for name in ("features", "query_features"):
        x, y = getattr(a, name), getattr(b, name)
        assert list(x) == list(y), name
        for k in x:
            assert (x[k].dtype, x[k].shape, x[k].tobytes()) == (y[k].dtype, y[k].shape, y[k].tobytes()), (name, k)


def outcome(obj, **kw):
    """The RankingSet, or the DataError text, of parsing ``obj``."""
    try:
        return parse_query_record(obj, **kw)
    except DataError as e:
        return e.format()


def assert_same_outcome(obj, **kw) -> None:
    fast, slow = outcome(obj, columnar=True, **kw), outcome(obj, columnar=False, **kw)
    if isinstance(fast, str) or isinstance(slow, str):
        assert fast == slow
    else:
        assert_identical(fast, slow)


# -- generated records --------------------------------------------------------------------------
NUMBER = st.one_of(
    st.floats(min_value=-1e30, max_value=1e30, allow_nan=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.integers(-(2**62), 2**62),
    st.booleans(),
)


@st.composite
def regular_records(draw) -> dict:
    """A valid record whose candidates are all alike: the columnar path must take it."""
    n = draw(st.integers(1, 6))
    native = draw(st.dictionaries(st.sampled_from(["image", "text", "meta"]), st.one_of(st.none(), st.integers(1, 5)),
                                  max_size=3))
    step5 = draw(st.dictionaries(st.sampled_from(["image_features", "text_features", "clip_features"]),
                                 st.integers(1, 5), max_size=2))
    scalars = draw(st.lists(st.sampled_from(["compliance_score", "conflict"]), unique=True))
    label_keys = draw(st.sampled_from([("label",), ("relevance_score",), ("label", "relevance_score")]))
    base_key = draw(st.sampled_from([None, "baseline_score", "raw_score"]))
    cands = []
    for k in range(n):
        c: dict = {"candidate_id": f"c{k}"}
        for key in label_keys:
            c[key] = draw(st.integers(0, 4) if key == "label" else NUMBER)
        if base_key:
            c[base_key] = draw(NUMBER)
        if native:
            c["features"] = {m: draw(NUMBER) if d is None else draw(st.lists(NUMBER, min_size=d, max_size=d))
                             for m, d in native.items()}
        for key, d in step5.items():
            c[key] = draw(st.lists(NUMBER, min_size=d, max_size=d))
        for key in scalars:
            c[key] = draw(st.booleans() if key == "conflict" else NUMBER)
        cands.append(c)
    obj = {"query_id": draw(st.sampled_from(["q", "7"])), "candidates": cands}
    if draw(st.booleans()):
        obj["query_features"] = {"qt": draw(st.lists(NUMBER, min_size=1, max_size=3))}
    return json.loads(json.dumps(obj))  # exactly what a JSON parser hands over


BAD_VALUES = st.sampled_from([None, "1.5", "", [], [1.0], [[1.0]], {}, float("nan"), float("inf"), 1e39,
                              -3.5e38, 10**400, 2**70, 2**64 - 1, True, 7,
                              # numbers a record built in Python may hold: read alike on both paths
                              np.float32(1.5), np.float16(-2.0), np.int64(-3), np.uint8(4), np.float32(np.inf)])


@st.composite
def mutated_records(draw) -> dict:
    """A regular record with one thing changed in one candidate: often invalid, sometimes not."""
    obj = draw(regular_records())
    cands = obj["candidates"]
    c = cands[draw(st.integers(0, len(cands) - 1))]
    kind = draw(st.sampled_from(["set", "drop", "element", "not_object", "reorder", "features"]))
    if kind == "set":
        c[draw(st.sampled_from(sorted(c) + ["label", "baseline_score"]))] = draw(BAD_VALUES)
    elif kind == "drop":
        del c[draw(st.sampled_from(sorted(c)))]
    elif kind == "element":
        lists = [(src, key) for src in (c, c.get("features", {})) for key, v in src.items()
                 if isinstance(v, list) and v]
        if lists:
            src, key = draw(st.sampled_from(lists))
            src[key][draw(st.integers(0, len(src[key]) - 1))] = draw(BAD_VALUES)
        else:
            c["extra_features"] = draw(BAD_VALUES)
    elif kind == "not_object":
        cands[cands.index(c)] = draw(st.sampled_from([None, [], "c", 3]))
    elif kind == "reorder":  # same keys, another order: fine for the slow path, refused by the fast one
        items = list(c.items())
        c.clear()
        c.update(reversed(items))
    elif "features" in c:
        c["features"] = draw(st.sampled_from([None, [], {}, {"other": [1.0]}]))
    else:
        c["features"] = {"image_features": [1.0]}
    return obj


@PROPERTY
@given(regular_records(), st.booleans())
def test_regular_records_take_the_columnar_path_and_match_the_slow_path(obj, require_labels):
    assert io_jsonl._columnar_candidates(obj["candidates"], require_labels) is not None
    fast = parse_query_record(obj, require_labels=require_labels)
    slow = parse_query_record(obj, require_labels=require_labels, columnar=False)
    assert_identical(fast, slow)


@PROPERTY
@given(mutated_records(), st.booleans())
def test_any_record_gives_the_same_result_or_message_on_both_paths(obj, require_labels):
    assert_same_outcome(obj, require_labels=require_labels)
    assert_same_outcome(obj, require_labels=require_labels, checker=QueryChecker((0, 2)))


# -- the contract ------------------------------------------------------------------------------
def _step5(n: int = 100, dims: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"query_id": "q1", "query_text": "red shoes", "candidates": [
        {"candidate_id": f"c{j}", "raw_score": float(rng.normal()), "compliance_score": float(rng.random()),
         "image_features": rng.normal(size=dims).round(5).tolist(),
         "text_features": rng.normal(size=dims).round(5).tolist()}
        for j in range(n)]}


def test_serving_sized_query_values(tmp_path):
    obj = _step5()
    assert io_jsonl._columnar_candidates(obj["candidates"], False) is not None
    rset = parse_query_record(obj, require_labels=False)
    assert rset.n_queries == 1 and rset.offsets.tolist() == [0, 100]
    assert rset.modality_dims == {"image": 64, "text": 64, "compliance": 1}
    assert rset.labels.tolist() == [0.0] * 100
    np.testing.assert_array_equal(rset.features["image"][7], np.float32(obj["candidates"][7]["image_features"]))
    assert rset.baseline_scores[3] == obj["candidates"][3]["raw_score"]
    assert rset.query_texts.tolist() == ["red shoes"]
    assert_identical(rset, parse_query_record(obj, require_labels=False, columnar=False))
    # read_jsonl runs the same code: with labels, the file reader and the record API agree
    for c in obj["candidates"]:
        c["label"] = 1
    (tmp_path / "q.jsonl").write_text(json.dumps(obj) + "\n")
    from_file, report = read_jsonl(tmp_path / "q.jsonl")
    assert report.ok
    assert_identical(from_file, parse_query_record(obj))


def test_labels_required_by_default_with_location():
    obj = _step5(3, 2)
    with pytest.raises(DataError) as err:
        parse_query_record(obj, path="requests.jsonl", line=12)
    assert err.value.format() == ("requests.jsonl:12: candidate 0 has no label — "
                                  "give every candidate a label (or relevance_score)")


def test_labels_optional_for_serving_absent_or_null_is_zero_but_a_bad_label_is_an_error():
    obj = _step5(3, 2)
    obj["candidates"][1]["relevance_score"] = 2
    obj["candidates"][2]["label"] = None
    assert parse_query_record(obj, require_labels=False).labels.tolist() == [0, 2, 0]
    obj["candidates"][0]["label"] = "high"
    with pytest.raises(DataError, match="candidate 0 label must be a number, got str"):
        parse_query_record(obj, require_labels=False)


@pytest.mark.parametrize("change,message", [
    (lambda o: o["candidates"][1]["image_features"].__setitem__(1, "2"),
     "candidate 1 modality 'image'[1] must be a number, got str"),
    (lambda o: o["candidates"][2]["text_features"].append(0.5), "modality 'text' has lengths [2, 3] within one query"),
    (lambda o: o["candidates"][0]["image_features"].__setitem__(0, 1e39),
     "candidate 0 modality 'image' holds a value beyond the float32 range"),
    (lambda o: o["candidates"][2]["image_features"].__setitem__(0, float("nan")),
     "modality 'image' contains NaN or infinite values"),
    (lambda o: o["candidates"][1].pop("raw_score"), "some candidates have a baseline score and some do not"),
    (lambda o: o["candidates"][2].__setitem__("candidate_id", "c0"), "duplicate candidate id(s) 'c0' in one query"),
])
def test_problems_are_reported_as_by_the_per_candidate_path(change, message):
    obj = _step5(3, 2)
    change(obj)
    with pytest.raises(DataError) as err:
        parse_query_record(obj, require_labels=False, path="f.jsonl", line=4)
    assert err.value.message == message and (err.value.path, err.value.line) == ("f.jsonl", 4)
    assert_same_outcome(obj, require_labels=False)


def test_checker_carries_dims_and_label_range_across_records():
    checker = QueryChecker((0, 1))
    first = _step5(2, 2)
    for c in first["candidates"]:
        c["label"] = 1
    parse_query_record(first, checker=checker)
    with pytest.raises(DataError, match="modality 'image' has dimension 3, earlier records have 2"):
        parse_query_record({**_step5(2, 3), "candidates": [{**c, "label": 0} for c in _step5(2, 3)["candidates"]]},
                           checker=checker)
    first["candidates"][0]["label"] = 4
    with pytest.raises(DataError, match=r"label 4 outside the declared range \[0, 1\]"):
        parse_query_record(first, checker=checker)


def test_serving_wrapper_reads_unlabelled_queries_and_reports_bad_ones_as_bad_records():
    obj = _step5(4, 3)
    assert_identical(ranking_set_of(obj), parse_query_record(obj, require_labels=False))
    obj["candidates"][3]["image_features"] = None
    with pytest.raises(BadRecord) as err:
        ranking_set_of(obj)
    assert (err.value.message, err.value.hint) == ("candidate 3 modality 'image' is null",
                                                   "give candidate 3 modality 'image' a value, or drop the record")


@pytest.mark.parametrize("element", [np.float32(1.5), np.int64(-3), np.float16(2.0), np.uint64(2**64 - 1)])
@pytest.mark.parametrize("everywhere", [False, True])
def test_numpy_numbers_in_a_modality_read_alike_on_both_paths(element, everywhere):
    # numpy turns the lists into a number array on the columnar path; the per-candidate path
    # must take the same numbers, not refuse what the other path read
    obj = _step5(4, 3)
    for c in obj["candidates"]:
        c["image_features"] = [element] * 3 if everywhere else [0.5, element, 2.0]
    assert io_jsonl._columnar_candidates(obj["candidates"], False) is not None
    assert_same_outcome(obj, require_labels=False)
    assert parse_query_record(obj, require_labels=False).features["image"][0, 1] == float(element)
