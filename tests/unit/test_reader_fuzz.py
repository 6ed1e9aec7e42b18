"""Property tests: whatever bytes a file holds, every ranking reader either reads it (with
``records_in == records_read + records_quarantined``) or raises ``DataError`` — never another
exception. Valid files round-trip exactly."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrank.data.formats import read_ranking, write_ranking
from mmrank.data.model import RankingSet
from mmrank.errors import DataError

import os

# more examples for a deeper hunt: MMRANK_FUZZ_EXAMPLES=2000 pytest tests/unit/test_reader_fuzz.py
FUZZ = settings(max_examples=int(os.environ.get("MMRANK_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _small_set(seed: int, n_queries: int, per_query: int, with_extras: bool) -> RankingSet:
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    return RankingSet(
        query_ids=[f"q{i}" for i in range(n_queries)],
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"d{j}" for j in range(n)],
        labels=rng.integers(0, 3, n),
        domains=[f"dom{i % 2}" for i in range(n_queries)] if with_extras else None,
        baseline_scores=rng.normal(size=n) if with_extras else None,
        features={"letor": rng.normal(size=(n, 5)).astype(np.float32)},
        query_features={"q": rng.normal(size=(n_queries, 2))} if with_extras else {},
        query_texts=[f"text {i}" for i in range(n_queries)] if with_extras else None,
    )


def _valid_bytes(fmt: str) -> dict[str, bytes]:
    """A valid small file of ``fmt`` (and its side files), as name -> bytes."""
    with tempfile.TemporaryDirectory() as d:
        name = {"jsonl": "a.jsonl", "parquet": "a.parquet", "libsvm": "a.txt", "lightgbm": "a.train"}[fmt]
        rset = _small_set(1, 3, 4, with_extras=fmt in ("jsonl", "parquet"))
        if fmt == "lightgbm":
            write_ranking(rset, Path(d) / name, "libsvm", group_file=True)
        else:
            write_ranking(rset, Path(d) / name)
        return {p.name: p.read_bytes() for p in Path(d).iterdir()}


STEP5 = {"query_id": "s1", "query_text": "cat", "candidates": [
    {"candidate_id": "x", "image_features": [0.1, 0.2], "text_features": [1, 2], "relevance_score": 2,
     "raw_score": 0.7, "compliance_score": 0.9, "conflict": True},
    {"candidate_id": "y", "image_features": [0.3, 0.4], "text_features": [4, 5], "relevance_score": 0,
     "raw_score": 0.1, "compliance_score": 0.2, "conflict": False}]}

VALID = {fmt: _valid_bytes(fmt) for fmt in ("jsonl", "parquet", "libsvm", "lightgbm")}
VALID["step5"] = {"s.jsonl": (json.dumps(STEP5) + "\n" + json.dumps({**STEP5, "query_id": "s2"}) + "\n").encode()}
FORMAT_OF = {"jsonl": "jsonl", "parquet": "parquet", "libsvm": "libsvm", "lightgbm": "libsvm", "step5": "jsonl"}


def _read_files(files: dict[str, bytes], fmt: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        main = next(n for n in files if not n.endswith(".query"))
        try:
            rset, report = read_ranking(Path(d) / main, FORMAT_OF[fmt])
        except DataError as e:
            assert e.path is not None and str(d) in e.path  # errors name the file
            return
        assert report.records_in == report.records_read + report.records_quarantined
        assert rset.n_queries <= report.records_read or fmt in ("libsvm", "lightgbm")
        for p in report.problems:
            assert p.path.startswith(str(d)) and p.message


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 = overwrite, 1 = insert, 2 = delete."""
    buf = bytearray(data)
    for kind, pos, byte in edits:
        if not buf and kind != 1:
            continue
        i = pos % (len(buf) + (kind == 1))
        if kind == 0:
            buf[i] = byte
        elif kind == 1:
            buf.insert(i, byte)
        else:
            del buf[i]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)
INTERESTING_BYTES = st.sampled_from([b"nan", b"inf", b"-", b":", b"qid:", b"#", b"\xff", b"\n", b" ", b"{", b"}",
                                      b'"', b"[", b"]", b"1e999", b"0:", b",", b"null", b"\x00", b"9" * 5000])


@pytest.mark.parametrize("fmt", sorted(VALID))
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_data_error(fmt, data):
    files = {n: data for n in VALID[fmt] if not n.endswith(".query")}
    if fmt == "lightgbm":
        files["a.train.query"] = data[:20]
    _read_files(files, fmt)


@pytest.mark.parametrize("fmt", sorted(VALID))
@FUZZ
@given(edits=EDITS)
def test_mutated_valid_file_raises_only_data_error(fmt, edits):
    files = dict(VALID[fmt])
    main = next(n for n in files if not n.endswith(".query"))
    files[main] = _mutate(files[main], edits)
    _read_files(files, fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "libsvm", "lightgbm", "step5"])
@FUZZ
@given(pieces=st.lists(st.tuples(st.integers(0, 10**6), INTERESTING_BYTES), min_size=1, max_size=5))
def test_spliced_tokens_raise_only_data_error(fmt, pieces):
    files = dict(VALID[fmt])
    main = next(n for n in files if not n.endswith(".query"))
    buf = files[main]
    for pos, piece in pieces:
        i = pos % (len(buf) + 1)
        buf = buf[:i] + piece + buf[i:]
    files[main] = buf
    _read_files(files, fmt)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
FIELD_PATHS = [("query_id",), ("query_text",), ("domain",), ("query_features",), ("candidates",),
               ("candidates", 0), ("candidates", 1, "candidate_id"), ("candidates", 0, "image_features"),
               ("candidates", 1, "image_features", 0), ("candidates", 0, "relevance_score"),
               ("candidates", 1, "raw_score"), ("candidates", 0, "conflict"), ("candidates", 0, "features")]


@FUZZ
@given(path=st.sampled_from(FIELD_PATHS), value=JSON_VALUES)
def test_any_json_value_in_any_field_raises_only_data_error(path, value):
    obj = json.loads(json.dumps(STEP5))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _read_files({"s.jsonl": (json.dumps(obj) + "\n").encode()}, "step5")


@pytest.mark.parametrize("fmt,name", [("jsonl", "x.jsonl"), ("parquet", "x.parquet"), ("libsvm", "x.txt")])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n_queries=st.integers(1, 5), per_query=st.integers(1, 6))
def test_valid_files_round_trip(fmt, name, seed, n_queries, per_query):
    rset = _small_set(seed, n_queries, per_query, with_extras=fmt != "libsvm")
    with tempfile.TemporaryDirectory() as d:
        path = write_ranking(rset, Path(d) / name)
        back, report = read_ranking(path)
    assert report.ok and report.records_in == (rset.n_candidates if fmt == "libsvm" else rset.n_queries)
    np.testing.assert_array_equal(back.offsets, rset.offsets)
    np.testing.assert_array_equal(back.query_ids, rset.query_ids)
    np.testing.assert_array_equal(back.candidate_ids, rset.candidate_ids)
    np.testing.assert_array_equal(back.labels, rset.labels)
    np.testing.assert_array_equal(back.features["letor"], rset.features["letor"])
    if fmt != "libsvm":
        np.testing.assert_array_equal(back.domains, rset.domains)
        np.testing.assert_array_equal(back.baseline_scores, rset.baseline_scores)
        np.testing.assert_array_equal(back.query_features["q"], rset.query_features["q"])
        np.testing.assert_array_equal(back.query_texts, rset.query_texts)
