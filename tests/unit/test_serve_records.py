"""Records for serving: a number that reads as infinity (``1e400``) never makes invalid JSON — it
was an HTTP answer with ``Infinity`` in it and a batch rerank that crashed on the whole file — and
a union field's type error is said once, in words."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrank.models.baselines import HeuristicBaseline
from mmrank.serve.app import ServeConfig, create_app
from mmrank.serve.batch import rerank_file
from mmrank.serve.model_slot import LoadedModel, ModelSlot
from mmrank.serve.policy import RerankPolicy
from serve_support import assert_permutation, step5_query


def strict_json(text: str):
    """json.loads that refuses Infinity/NaN, as every other JSON reader does."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


NUMBERS = st.builds(lambda digits, exponent, neg: ("-" if neg else "") + "7" + "1" * (digits - 1) + f"e{exponent}",
                    st.integers(1, 350), st.integers(-400, 400), st.booleans())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(NUMBERS, st.sampled_from(["extra", "query_id", "candidate_id"]))
def test_any_number_anywhere_gives_valid_json_or_a_quarantined_line(tmp_path_factory, number, where):
    d = tmp_path_factory.mktemp("num")
    q = step5_query(np.random.default_rng(0), "q", 3)
    text = json.dumps(q)
    text = {"extra": text.replace('"query_text"', f'"extra": {number}, "query_text"'),
            "query_id": text.replace('"q"', number, 1), "candidate_id": text.replace('"q-c1"', number)}[where]
    (d / "in.jsonl").write_text(text + "\n")
    summary = rerank_file(HeuristicBaseline(), d / "in.jsonl", d / "out.jsonl", RerankPolicy())
    assert summary.queries_written + summary.quarantined == 1
    if math.isinf(float(number)):
        assert summary.quarantined == 1
    else:
        assert summary.queries_written == 1
        assert len(strict_json((d / "out.jsonl").read_text())["candidates"]) == 3


def test_a_line_with_an_overflowing_number_is_quarantined_not_a_crash(tmp_path):
    good = step5_query(np.random.default_rng(0), "good", 4)
    src = tmp_path / "in.jsonl"
    src.write_text('{"query_id": "q", "extra": 1e400, "candidates": [{"candidate_id": "a", "raw_score": 1}]}\n'
                   + json.dumps(good) + "\n")
    summary = rerank_file(HeuristicBaseline(), src, tmp_path / "out.jsonl", RerankPolicy())
    assert (summary.queries_written, summary.quarantined) == (1, 1)
    bad = json.loads((tmp_path / "out.jsonl.quarantine.jsonl").read_text())
    assert bad["line"] == 1 and "too large for a float" in bad["reason"]
    assert_permutation(good, json.loads((tmp_path / "out.jsonl").read_text()))


class FirstFeature:
    def score(self, rset):
        return rset.features["image"][:, 0]


def test_http_answers_are_always_valid_json_and_union_errors_are_said_once():
    app = create_app(ModelSlot(LoadedModel(FirstFeature(), Path("/nonexistent/run"), "t", "t:x", "v", 0.0)),
                     ServeConfig(policy=RerankPolicy(timeout_ms=5000)))
    good = step5_query(np.random.default_rng(1), "q", 3, labels=False)
    with TestClient(app) as c:
        inf_id = c.post("/rerank", content=json.dumps(good).replace('"q-c0"', "1e400").encode(),
                        headers={"content-type": "application/json"})
        null_id = c.post("/rerank", json={**good, "query_id": None})
        obj_vec = c.post("/rerank", json={**good, "query_features": {"text": {"a": 1}}})
    assert inf_id.status_code == 422 and "too large for a float" in inf_id.json()["detail"]
    assert strict_json(inf_id.text)
    assert null_id.status_code == 422 and null_id.json()["detail"] == "query_id: must be a string or a number"
    assert obj_vec.json()["errors"] == [{"field": "query_features.text", "message": "must be a list of numbers or a number"}]
