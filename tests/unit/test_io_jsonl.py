"""JSONL reader/writer: native schema, the Step5 mapping, bad lines at exact lines, exact writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmrank.data.formats import detect_format, read_ranking, write_ranking
from mmrank.data.io_jsonl import read_jsonl, write_jsonl
from mmrank.data.model import RankingSet
from mmrank.errors import DataError


def _lines(tmp_path: Path, objs: list, name: str = "f.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return p


def _native(qid: str, n: int = 2, **extra) -> dict:
    return {
        "query_id": qid, "domain": "shop", **extra,
        "candidates": [
            {"candidate_id": f"{qid}c{k}", "label": k % 3, "baseline_score": 0.5 * k,
             "features": {"image": [k, 0.25], "meta": 1.5 * k}}
            for k in range(n)
        ],
    }


def test_native_schema_values(tmp_path):
    path = _lines(tmp_path, [_native("q1", 3, query_text="red shoes", query_features={"qt": [1, 2, 3]}),
                             _native("q2", 1, query_features={"qt": [4, 5, 6]})])
    rset, report = read_jsonl(path)
    assert report.ok and report.records_read == 2
    assert rset.offsets.tolist() == [0, 3, 4]
    assert rset.candidate_ids.tolist() == ["q1c0", "q1c1", "q1c2", "q2c0"]
    assert rset.labels.tolist() == [0, 1, 2, 0]
    assert rset.baseline_scores.tolist() == [0, 0.5, 1.0, 0]
    assert rset.modality_dims == {"image": 2, "meta": 1}
    np.testing.assert_array_equal(rset.features["meta"][:, 0], [0, 1.5, 3.0, 0])
    np.testing.assert_array_equal(rset.query_features["qt"], [[1, 2, 3], [4, 5, 6]])
    assert rset.domains.tolist() == ["shop", "shop"]
    assert rset.query_texts.tolist() == ["red shoes", None]


def test_step5_shape_maps_fields(tmp_path):
    step5 = {"query_id": "s1", "query_text": "cat", "candidates": [
        {"candidate_id": "x", "image_features": [0.1, 0.2], "text_features": [1, 2, 3], "relevance_score": 2,
         "raw_score": 0.7, "compliance_score": 0.9, "conflict": True, "unknown_field": {"a": 1}},
        {"candidate_id": "y", "image_features": [0.3, 0.4], "text_features": [4, 5, 6], "relevance_score": 0,
         "raw_score": 0.1, "compliance_score": 0.2, "conflict": False},
    ]}
    rset, report = read_jsonl(_lines(tmp_path, [step5]))
    assert report.ok
    assert rset.modality_dims == {"image": 2, "text": 3, "compliance": 1, "conflict": 1}
    assert rset.labels.tolist() == [2, 0] and rset.baseline_scores.tolist() == [0.7, 0.1]
    np.testing.assert_array_equal(rset.features["conflict"][:, 0], [1, 0])
    np.testing.assert_allclose(rset.features["compliance"][:, 0], [0.9, 0.2], rtol=1e-7)
    assert rset.query_texts.tolist() == ["cat"] and rset.domains.tolist() == ["default"]


BAD = [
    ('{"query_id": "b", "candidates": [', "not valid JSON"),
    ("[1, 2]", "a line must be a JSON object"),
    ({"candidates": []}, "query_id missing or not a string/number"),
    ({"query_id": "b"}, "'candidates' missing or not a list"),
    ({"query_id": "b", "candidates": []}, "empty query: no candidates"),
    ({"query_id": "b", "candidates": [{"candidate_id": "c", "features": {"image": [1, 2], "meta": 1}}]},
     "candidate 0 has no label"),
    ({"query_id": "b", "candidates": [{"candidate_id": "c", "label": "high", "features": {}}]},
     "candidate 0 label must be a number, got str"),
    ({"query_id": "b", "candidates": [
        {"candidate_id": "c", "label": 1, "baseline_score": 0, "features": {"image": [1, 2], "meta": 1}},
        {"candidate_id": "d", "label": 1, "baseline_score": 0, "features": {"image": [1], "meta": 1}}]},
     "modality 'image' has lengths [1, 2] within one query"),
    ({"query_id": "b", "candidates": [
        {"candidate_id": "c", "label": 1, "baseline_score": 0, "features": {"image": [1, 2, 3], "meta": 1}}]},
     "modality 'image' has dimension 3, earlier records have 2"),
    ({"query_id": "b", "candidates": [{"candidate_id": "c", "label": 1, "baseline_score": 0,
                                       "features": {"image": [1, 2]}}]},
     "modalities ['image'] differ from earlier records ['image', 'meta']"),
    ({"query_id": "b", "candidates": [
        {"candidate_id": "c", "label": 1, "baseline_score": 0, "features": {"image": [1, 2], "meta": 1}},
        {"candidate_id": "c", "label": 0, "baseline_score": 0, "features": {"image": [1, 2], "meta": 1}}]},
     "duplicate candidate id(s) 'c' in one query"),
    ('{"query_id": "b", "candidates": [{"candidate_id": "c", "label": 1, "baseline_score": 0, '
     '"features": {"image": [NaN, 2], "meta": 1}}]}', "modality 'image' contains NaN or infinite values"),
    ({"query_id": "b", "candidates": [{"candidate_id": "c", "label": 9, "baseline_score": 0,
                                       "features": {"image": [1, 2], "meta": 1}}]},
     "label 9 outside the declared range [0, 2]"),
    (_native("a"), "query_id 'a' already used at line 1"),
]


@pytest.mark.parametrize("bad,message", BAD)
def test_bad_line_quarantined_with_exact_reason(tmp_path, bad, message):
    path = _lines(tmp_path, [_native("a"), bad, _native("z")])
    rset, report = read_jsonl(path, label_range=(0, 2))
    assert [(p.line, p.message[: len(message)]) for p in report.problems] == [(2, message)]
    assert (report.records_in, report.records_read, report.records_quarantined) == (3, 2, 1)
    assert rset.query_ids.tolist() == ["a", "z"]
    with pytest.raises(DataError) as err:
        read_jsonl(path, strict=True, label_range=(0, 2))
    assert err.value.line == 2 and err.value.path == str(path)


def test_blank_lines_are_not_records_and_bad_utf8_is_reported(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_bytes(json.dumps(_native("a")).encode() + b"\n\n   \n\xff{}\n")
    _, report = read_jsonl(p)
    assert report.records_in == 2
    assert [(x.line, x.message) for x in report.problems] == [(4, "line is not UTF-8 text")]


def test_writer_exact_text(tmp_path):
    rset = RankingSet(
        query_ids=["q"], offsets=[0, 2], candidate_ids=["b", "a"], labels=[1, 0.5], domains=["d"],
        baseline_scores=[0.1, 2.0], features={"text": np.array([[0.1], [0.2]]), "image": np.array([[1e-8], [3]])},
        query_features={"qt": [[0.007477, 1]]}, query_texts=["héllo"],
    )
    write_jsonl(rset, tmp_path / "o.jsonl")
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8") == (
        '{"query_id": "q", "domain": "d", "query_text": "héllo", "query_features": {"qt": [0.007477, 1.0]}, '
        '"candidates": [{"candidate_id": "b", "label": 1, "baseline_score": 0.1, '
        '"features": {"image": [1e-08], "text": [0.1]}}, {"candidate_id": "a", "label": 0.5, '
        '"baseline_score": 2.0, "features": {"image": [3.0], "text": [0.2]}}]}\n'
    )


def test_round_trip_is_exact_and_byte_stable(tmp_path):
    rng = np.random.default_rng(3)
    rset = RankingSet(
        query_ids=["a", "b"], offsets=[0, 3, 5], candidate_ids=list("vwxyz"), labels=[0, 1, 2, 0, 4],
        baseline_scores=rng.normal(size=5), features={"image": rng.normal(size=(5, 7))},
    )
    write_ranking(rset, tmp_path / "1.jsonl")
    back, _ = read_ranking(tmp_path / "1.jsonl")
    np.testing.assert_array_equal(back.features["image"], rset.features["image"])
    np.testing.assert_array_equal(back.baseline_scores, rset.baseline_scores)
    write_ranking(back, tmp_path / "2.jsonl")
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()


def test_writer_refuses_nan(tmp_path):
    rset = RankingSet(query_ids=["q"], offsets=[0, 1], candidate_ids=["a"], labels=[0],
                      features={"x": np.array([[np.nan]])})
    with pytest.raises(DataError, match="NaN or infinite"):
        write_jsonl(rset, tmp_path / "n.jsonl")


def test_detection_by_content_when_extension_is_unknown(tmp_path):
    p = tmp_path / "scored.data"
    p.write_text(json.dumps(_native("a")) + "\n")
    assert detect_format(p) == "jsonl"
    q = tmp_path / "letor.data"
    q.write_text("2 qid:1 1:0.5\n")
    assert detect_format(q) == "libsvm"
    r = tmp_path / "what.data"
    r.write_text("hello\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(r)


@pytest.mark.parametrize("image,message", [
    ('[1, "2"]', "candidate 0 modality 'image'[1] must be a number, got str"),
    ("[1, [2]]", "candidate 0 modality 'image'[1] must be a number, got list"),
    ("[1, 1e39]", "candidate 0 modality 'image' holds a value beyond the float32 range"),
    ("[1, " + "9" * 400 + "]", "candidate 0 modality 'image' holds a number too large for a float"),
    ("[true, false]", None),
])
def test_feature_value_types(tmp_path, image, message):
    line = '{"query_id": "q", "candidates": [{"candidate_id": "c", "label": 1, "features": {"image": %s}}]}' % image
    p = tmp_path / "f.jsonl"
    p.write_text(line + "\n")
    rset, report = read_jsonl(p)
    assert [x.message for x in report.problems] == ([] if message is None else [message])
    if message is None:
        assert rset.features["image"].tolist() == [[1.0, 0.0]]


def test_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(_native("a")).encode() + b"\r\n")
    rset, report = read_jsonl(p)
    assert report.ok and rset.query_ids.tolist() == ["a"]


def test_regular_and_irregular_records_read_alike(tmp_path):
    """The columnar path (candidates alike) and the per-candidate path (here: keys in another
    order in one candidate) give the same arrays; modalities keep the first candidate's order."""
    regular = _native("a", 3)
    irregular = _native("b", 3)
    irregular["candidates"][1] = dict(reversed(list(irregular["candidates"][1].items())))
    rset, report = read_jsonl(_lines(tmp_path, [regular, irregular]))
    assert report.ok
    assert list(rset.features) == ["image", "meta"]
    np.testing.assert_array_equal(rset.features["image"][:3], rset.features["image"][3:])
    np.testing.assert_array_equal(rset.features["meta"][:3], rset.features["meta"][3:])
    assert rset.labels.tolist() == [0, 1, 2] * 2 and rset.baseline_scores.tolist() == [0, 0.5, 1.0] * 2
