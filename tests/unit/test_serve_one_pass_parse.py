"""The one-pass request parser (``request_parse._valid_in_one_pass``) is a shortcut only: every body
gets the answer the step by step path gives it (the same query, or the same error response).

Each body is parsed twice — as served, and with the shortcut switched off — and the outcomes are
compared: the RankingSet's arrays and the echoed ids (type and value) for a valid body, the status
and the exact error body otherwise. Bodies: valid ones in both schemas and odd but valid shapes,
then the invalid ones the step by step path was written for, and the ones the shortcut must leave
alone (NaN/Infinity in a field the schema leaves open, escaped keys, over the limit).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrank.serve import request_parse
from mmrank.serve.request_parse import ParsedQuery, parse_request

LIMIT = 5


def _step5(n: int = 3, **extra) -> dict:
    return {"query_id": "q", "query_text": "red shoes", "candidates": [
        {"candidate_id": f"c{j}", "raw_score": 1.0 - j, "image_features": [0.5, j], "text_features": [1, 2, 3],
         "compliance_score": 0.25, **extra} for j in range(n)]}


VALID = [
    _step5(),
    _step5(relevance_score=2),  # an int label: the shortcut reads it as 2.0, the same number
    {"query_id": 7, "domain": "shop", "candidates": [{"candidate_id": 1.0, "features": {"img": [1, 2], "meta": 3}},
                                                     {"candidate_id": 2, "features": {"img": [0.5, 1e-3], "meta": -1}}]},
    {"query_id": "q", "query_features": {"user": [1.0, 2.0]}, "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}}]},
    _step5(audio_features=[1, 2]),  # an extra modality, outside the schema's fields
    {"query_id": "q", "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}, "note": {"any": ["thing", None]}}]},
    {"query_id": 12345678901234567890123, "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}}]},  # a big int id
    _step5(n=LIMIT),
]

INVALID = [
    b"", b"not json", b"[1, 2]", b'{"query_id": "q"}', b'{"query_id": "q", "candidates": []}',
    json.dumps(_step5(n=LIMIT + 1)).encode(),  # over the limit
    json.dumps({"query_id": True, "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}}]}).encode(),
    json.dumps(_step5(relevance_score=True)).encode(),
    json.dumps(_step5(raw_score="2")).encode(),
    json.dumps(_step5(image_features=[1, "2"])).encode(),
    json.dumps(_step5(audio_features=[1, "x"])).encode(),  # an extra modality the schema cannot see
    json.dumps(_step5(audio_features=[1, 2, 3])).encode() [:-3] + b"}",  # cut short
    b'{"query_id": "q", "candidates": [{"candidate_id": "a", "features": {"x": [NaN]}}]}',
    b'{"query_id": "q", "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}, "extra": Infinity}]}',
    b'{"query_id": "q", "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}, "extra": -Infinity}]}',
    b'{"query_id": "q", "candidates": [{"candidate_id": 1e999, "features": {"x": [1.0]}}]}',  # reads as infinity
    json.dumps({"query_id": "q", "candidates": [{"candidate_id": "a", "features": {"x": [1.0]}},
                                                {"candidate_id": "b", "features": {"x": [1.0, 2.0]}}]}).encode(),
]


def _outcome(body: bytes):
    parsed = parse_request(body, LIMIT)
    if isinstance(parsed, ParsedQuery):
        q = parsed.query
        ids = [(type(v), v) for v in [parsed.obj["query_id"], *(c["candidate_id"] for c in parsed.obj["candidates"])]]
        arrays = {"labels": q.labels, "baseline": q.baseline_scores, **{f"f_{k}": v for k, v in q.features.items()},
                  **{f"q_{k}": v for k, v in q.query_features.items()}}
        return "ok", ids, list(q.candidate_ids), q.query_texts, {k: None if v is None else v.tolist() for k, v in arrays.items()}
    return parsed.status_code, bytes(parsed.body)


def _step_by_step(body: bytes, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(request_parse, "_valid_in_one_pass", lambda body, limit: None)
        return _outcome(body)


@pytest.mark.parametrize("obj", VALID, ids=range(len(VALID)))
def test_a_valid_body_takes_the_shortcut_and_reads_as_the_step_by_step_path_reads_it(obj, monkeypatch):
    body = json.dumps(obj).encode()
    assert request_parse._valid_in_one_pass(body, LIMIT) is not None  # the shortcut really ran
    fast = _outcome(body)
    assert fast[0] == "ok"
    assert fast == _step_by_step(body, monkeypatch)


@pytest.mark.parametrize("body", INVALID, ids=range(len(INVALID)))
def test_an_invalid_body_gets_the_step_by_step_answer(body, monkeypatch):
    # (a body can pass the schema and still be refused after it, e.g. a bad extra modality)
    fast = _outcome(body)
    assert fast[0] != "ok", fast
    assert fast == _step_by_step(body, monkeypatch)


@pytest.mark.parametrize("body", [b for b in INVALID if b"NaN" in b or b"Infinity" in b or b"\\u" in b] + [INVALID[5]])
def test_the_shortcut_leaves_alone_what_it_cannot_judge(body):
    assert request_parse._valid_in_one_pass(body, LIMIT) is None


def test_the_shortcut_stops_at_the_limit_on_a_huge_list_of_bad_candidates():
    # 200,000 candidates without ids (the raw-byte count sees none): the schema's bound stops the
    # one-pass validation at the first candidate past the limit instead of collecting 200,000 errors
    from pydantic import ValidationError

    from mmrank.serve.schemas import rerank_request

    body = json.dumps({"query_id": "q", "candidates": [{}] * 200_000}).encode()
    with pytest.raises(ValidationError) as refused:
        rerank_request(LIMIT).validate_json(body)
    assert refused.value.error_count() == 1 and refused.value.errors()[0]["type"] == "too_long"
    assert parse_request(body, LIMIT).status_code == 413


def test_an_escaped_key_takes_the_step_by_step_path_and_is_read():
    body = b'{"query_id": "q", "candidates": [{"candidate_\\u0069d": "a", "features": {"x": [1.0]}}]}'
    assert request_parse._valid_in_one_pass(body, LIMIT) is None
    assert parse_request(body, LIMIT).query.candidate_ids.tolist() == ["a"]


def test_escapes_in_text_are_read_the_same():
    obj = _step5()
    obj["query_text"] = "caf\u00e9 \u2603"
    body = json.dumps(obj, ensure_ascii=True).encode()
    assert b"\\u" in body and request_parse._valid_in_one_pass(body, LIMIT) is None
    parsed = parse_request(body, LIMIT)
    assert parsed.query.query_texts[0] == "caf\u00e9 \u2603"
    assert np.array_equal(parsed.query.features["image"], [[0.5, 0.0], [0.5, 1.0], [0.5, 2.0]])
