"""The HTTP app in-process (FastAPI TestClient) with a real LambdaMART run and injected faults:
fallback with its reason, timeout, shadow, rollout, uncertainty, 413/422/401/403, health,
metrics, reload, OpenAPI — and no training stack in a serving process."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mmrank.serve.app import ServeConfig, create_app
from mmrank.serve.policy import RerankPolicy
from mmrank.serve.model_slot import LoadedModel, ModelSlot, load_run
from mmrank.serve.records import ranking_set_of
from mmrank.serve.rollout import in_rollout
from serve_support import assert_permutation, step5_query, train_run


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    """One folder holding every run of these tests: the server's default models root."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def run_dir(models_root) -> Path:
    return train_run(models_root / "run_a", seed=0)


@pytest.fixture(scope="module")
def other_run_dir(models_root) -> Path:
    return train_run(models_root / "run_b", seed=1)


@pytest.fixture(scope="module")
def other_layout_run(models_root) -> Path:
    """Same kind of model, other inputs: image 3-d and no text modality."""
    return train_run(models_root / "run_other_layout", seed=2, dims={"image": 3})


def loaded(ranker) -> LoadedModel:
    return LoadedModel(ranker=ranker, run_dir=Path("."), kind="test", model_id="test:injected", version="v0", loaded_at=time.time())


def client(ranker_or_run, **config) -> TestClient:
    slot = ModelSlot(load_run(ranker_or_run) if isinstance(ranker_or_run, Path) else loaded(ranker_or_run))
    config.setdefault("policy", RerankPolicy(timeout_ms=5000))
    return TestClient(create_app(slot, ServeConfig(**config)))


class Raising:
    def score(self, rset):
        raise RuntimeError("injected model failure")


class NaNScores:
    def score(self, rset):
        s = np.zeros(rset.n_candidates)
        s[0] = np.nan
        return s


class Slow:
    def score(self, rset):
        time.sleep(0.5)
        return np.zeros(rset.n_candidates)


class Uncertain:
    def __init__(self, std):
        self.std = std

    def score(self, rset):
        return -np.arange(rset.n_candidates, dtype=float)

    def score_with_uncertainty(self, rset, n_passes):
        return -np.arange(rset.n_candidates, dtype=float)[::-1].copy(), np.full(rset.n_candidates, self.std)


def original_ids(req):
    return [c["candidate_id"] for c in req["candidates"]]


def returned_ids(body):
    return [c["candidate_id"] for c in body["candidates"]]


def test_real_model_reranks_by_its_own_scores(run_dir):
    req = step5_query(np.random.default_rng(5), "q-real", 30, labels=False)
    with client(run_dir) as c:
        body = c.post("/rerank", json=req).json()
    assert body["status"] == "reranked" and body["reason"] == "ok"
    assert_permutation(req, body)
    model = load_run(run_dir).ranker
    scores = model.score(ranking_set_of(req))
    expected = [req["candidates"][i]["candidate_id"] for i in np.argsort(-scores, kind="stable")]
    assert returned_ids(body) == expected
    assert [c["score"] for c in body["candidates"]] == pytest.approx(sorted(scores, reverse=True))


@pytest.mark.parametrize("ranker, reason", [(Raising(), "model_error"), (NaNScores(), "non_finite_scores"), (Slow(), "timeout")])
def test_model_fault_returns_original_order_with_status_fallback_and_reason(ranker, reason):
    req = step5_query(np.random.default_rng(1), "q-fault", 12, labels=False)
    with client(ranker, policy=RerankPolicy(timeout_ms=100)) as c:
        r = c.post("/rerank", json=req)
        metrics = c.get("/metrics").text
    body = r.json()
    assert r.status_code == 200
    assert (body["status"], body["reason"]) == ("fallback", reason)
    assert returned_ids(body) == original_ids(req)
    assert all(c["score"] is None for c in body["candidates"])
    if reason == "model_error":
        assert "injected model failure" in body["detail"]
    assert f'mmrank_fallbacks_total{{reason="{reason}"}} 1.0' in metrics


def test_uncertainty_threshold_uses_mc_dropout_and_is_measured():
    req = step5_query(np.random.default_rng(2), "q-unc", 5, labels=False)
    policy = RerankPolicy(timeout_ms=5000, uncertainty_threshold=0.3, mc_passes=4)
    with client(Uncertain(0.5), policy=policy) as c:
        high = c.post("/rerank", json=req).json()
        metrics = c.get("/metrics").text
    with client(Uncertain(0.1), policy=policy) as c:
        low = c.post("/rerank", json=req).json()
    assert (high["status"], high["reason"], high["uncertainty"]) == ("fallback", "uncertainty", pytest.approx(0.5))
    assert returned_ids(high) == original_ids(req)
    assert 'mmrank_fallbacks_total{reason="uncertainty"} 1.0' in metrics
    assert "mmrank_uncertainty_count 1.0" in metrics
    # the MC-dropout mean (not score()) decided the order: it reverses the request
    assert low["status"] == "reranked" and returned_ids(low) == original_ids(req)[::-1]


def test_shadow_returns_the_original_order_and_logs_the_model_order(run_dir, caplog):
    req = step5_query(np.random.default_rng(3), "q-shadow", 10, labels=False)
    with client(run_dir, policy=RerankPolicy(timeout_ms=5000, shadow=True)) as c, caplog.at_level(logging.INFO, "mmrank.serve"):
        body = c.post("/rerank", json=req).json()
    assert (body["status"], body["reason"]) == ("shadow", "shadow_mode")
    assert returned_ids(body) == original_ids(req)
    scores = load_run(run_dir).ranker.score(ranking_set_of(req))
    logged = [json.loads(r.getMessage()) for r in caplog.records if "shadow" in r.getMessage()]
    assert logged[0]["model_order"] == [req["candidates"][i]["candidate_id"] for i in np.argsort(-scores, kind="stable")]
    assert [c["score"] for c in body["candidates"]] == pytest.approx(list(scores))


def test_rollout_reranks_exactly_the_hashed_share(run_dir):
    rng = np.random.default_rng(4)
    with client(run_dir, policy=RerankPolicy(timeout_ms=5000, rollout_percent=40)) as c:
        for i in range(30):
            qid = f"roll-{i}"
            body = c.post("/rerank", json=step5_query(rng, qid, 4, labels=False)).json()
            assert body["reason"] == ("ok" if in_rollout(qid, 40) else "outside_rollout")


def test_oversized_requests_get_413(run_dir):
    rng = np.random.default_rng(6)
    with client(run_dir, max_candidates=20, max_body_bytes=20_000) as c:
        many = c.post("/rerank", json=step5_query(rng, "big", 21, dims={"image": 1, "text": 1}, labels=False))
        fat = c.post("/rerank", json=step5_query(rng, "fat", 19, dims={"image": 200, "text": 4}, labels=False))
        fine = c.post("/rerank", json=step5_query(rng, "ok", 20, labels=False))
    assert many.status_code == 413 and "limit 20" in many.json()["detail"]
    assert fat.status_code == 413 and "larger than 20000 bytes" in fat.json()["detail"]
    assert fine.status_code == 200


def test_schema_errors_get_422_naming_the_field(run_dir):
    good = step5_query(np.random.default_rng(7), "q", 3, labels=False)
    with client(run_dir) as c:
        no_id = c.post("/rerank", json={**good, "candidates": [{"raw_score": 1.0}]})
        bad_vec = c.post("/rerank", json={**good, "candidates": [{**good["candidates"][0], "image_features": [1, "x"]}]})
        empty = c.post("/rerank", json={**good, "candidates": []})
        dup = c.post("/rerank", json={**good, "candidates": [good["candidates"][0]] * 2})
        ragged = c.post("/rerank", json={**good, "candidates": [good["candidates"][0], {**good["candidates"][1], "text_features": [1.0]}]})
        broken = c.post("/rerank", content=b'{"query_id": "x", "candidates": [', headers={"content-type": "application/json"})
        # the schema's "number" and "string or number" are literal: no true-as-1, no "2"-as-2.0
        bool_label = c.post("/rerank", json={**good, "candidates": [{**good["candidates"][0], "relevance_score": True}]})
        text_score = c.post("/rerank", json={**good, "candidates": [{**good["candidates"][0], "raw_score": "2"}]})
        bool_qid = c.post("/rerank", json={**good, "query_id": True})
    assert bool_label.status_code == 422 and bool_label.json()["errors"][0]["field"] == "candidates.0.relevance_score"
    assert text_score.status_code == 422 and text_score.json()["errors"][0]["field"] == "candidates.0.raw_score"
    assert bool_qid.status_code == 422 and bool_qid.json()["errors"][0]["field"] == "query_id"
    assert no_id.status_code == 422 and no_id.json()["errors"][0]["field"] == "candidates.0.candidate_id"
    assert bad_vec.status_code == 422 and bad_vec.json()["errors"][0]["field"] == "candidates.0.image_features.1"
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "candidates"
    assert dup.status_code == 422 and "duplicate candidate id" in dup.json()["detail"]
    assert ragged.status_code == 422 and "'text'" in ragged.json()["detail"]
    assert broken.status_code == 422


def test_bearer_token_guards_rerank_and_reload(run_dir, other_run_dir):
    req = step5_query(np.random.default_rng(8), "q-auth", 5, labels=False)
    auth = {"Authorization": "Bearer s3cret"}
    with client(run_dir, token="s3cret") as c:
        denied = c.post("/rerank", json=req)
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert c.post("/rerank", json=req, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/rerank", json=req, headers=auth).status_code == 200
        assert c.get("/health").status_code == 200  # probes stay open
        assert c.post("/admin/reload", json={"run_dir": str(other_run_dir)}).status_code == 401
    with client(run_dir) as c:  # no token configured: reload is off
        assert c.post("/admin/reload", json={"run_dir": str(other_run_dir)}).status_code == 403


def test_reload_swaps_the_model_and_a_bad_run_keeps_the_old_one(run_dir, other_run_dir, models_root):
    req = step5_query(np.random.default_rng(9), "q-reload", 25, labels=False)
    auth = {"Authorization": "Bearer t"}
    broken = models_root / "broken_run"
    broken.mkdir(exist_ok=True)
    (broken / "model.json").write_text('{"kind": "nonsense"}')
    with client(run_dir, token="t") as c:
        before = c.get("/health").json()
        first = c.post("/rerank", json=req, headers=auth).json()
        swapped = c.post("/admin/reload", json={"run_dir": other_run_dir.name}, headers=auth)
        second = c.post("/rerank", json=req, headers=auth).json()
        failed = c.post("/admin/reload", json={"run_dir": "broken_run"}, headers=auth)
        missing = c.post("/admin/reload", json={"run_dir": "nowhere"}, headers=auth)
        after = c.get("/health").json()
        metrics = c.get("/metrics").text
    assert swapped.status_code == 200 and swapped.json()["model_version"] != before["model_version"]
    assert swapped.json()["forced_reload"] is False and swapped.json()["reload_problems"] == []
    assert first["model_version"] == before["model_version"] and second["model_version"] == swapped.json()["model_version"]
    b_scores = load_run(other_run_dir).ranker.score(ranking_set_of(req))
    assert [c["score"] for c in second["candidates"]] == pytest.approx(sorted(b_scores, reverse=True))
    assert failed.status_code == 422 and "still serving" in failed.json()["detail"]
    assert str(models_root) not in failed.json()["detail"]
    assert missing.status_code == 404
    assert after["model_version"] == swapped.json()["model_version"]
    assert 'mmrank_reloads_total{result="ok"} 1.0' in metrics and 'mmrank_reloads_total{result="failed"} 2.0' in metrics


def test_reload_of_another_layout_is_refused_unless_forced(run_dir, other_layout_run):
    """Issue 14 (2): the 3-d image run cannot score this server's traffic (image 6 + text 4): 422,
    and the old model keeps reranking; with force it swaps, and /health says it was forced."""
    req = step5_query(np.random.default_rng(13), "q-layout", 10, labels=False)
    auth = {"Authorization": "Bearer t"}
    with client(run_dir, token="t") as c:
        served = c.get("/health").json()
        assert c.post("/rerank", json=req, headers=auth).json()["status"] == "reranked"
        refused = c.post("/admin/reload", json={"run_dir": other_layout_run.name}, headers=auth)
        still = c.post("/rerank", json=req, headers=auth).json()
        health = c.get("/health").json()
        forced = c.post("/admin/reload", json={"run_dir": other_layout_run.name, "force": True}, headers=auth)
        after = c.post("/rerank", json=req, headers=auth).json()
        forced_health = c.get("/health").json()
        metrics = c.get("/metrics").text
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "differ from the serving model's" in detail and "cannot score queries of the current traffic" in detail
    assert '"force": true' in detail and "/tmp" not in detail
    assert (still["status"], still["model_version"]) == ("reranked", served["model_version"])
    assert health["model_version"] == served["model_version"] and health["forced_reload"] is False
    assert forced.status_code == 200 and forced.json()["forced_reload"] is True
    assert forced_health["forced_reload"] is True and forced_health["model_id"] == f"lambdamart:{other_layout_run.name}"
    assert any("differ from the serving model's" in p for p in forced_health["reload_problems"])
    assert (after["status"], after["reason"]) == ("fallback", "model_error")  # what force bought: fallbacks
    assert 'mmrank_reloads_total{result="refused"} 1.0' in metrics and 'mmrank_reloads_total{result="forced"} 1.0' in metrics


def test_reload_before_any_traffic_checks_the_declared_inputs(run_dir, other_layout_run):
    auth = {"Authorization": "Bearer t"}
    with client(run_dir, token="t") as c:
        refused = c.post("/admin/reload", json={"run_dir": other_layout_run.name}, headers=auth)
    assert refused.status_code == 422 and "image 6, text 4" in refused.json()["detail"]


def test_reload_is_confined_to_the_models_root_and_paths_stay_private(run_dir, tmp_path):
    """Issue 14 (9): outside the root — absolute, '..', a symlink out, existing or not — one
    answer; /health names no server path."""
    outside = train_run(tmp_path / "outside_run", seed=3)
    link = run_dir.parent / "link_out"
    if not link.exists():
        link.symlink_to(outside)
    auth = {"Authorization": "Bearer t"}
    with client(run_dir, token="t") as c:
        answers = [c.post("/admin/reload", json={"run_dir": p}, headers=auth)
                   for p in (str(outside), f"../{tmp_path.name}/outside_run", "link_out", str(tmp_path / "nowhere"), "/etc", "x" * 5000)]
        health = c.get("/health")
    assert [a.status_code for a in answers] == [404] * 6
    assert len({a.json()["detail"].split("'")[-1] for a in answers}) == 1  # same words whatever exists
    assert str(run_dir.parent) not in health.text and "/tmp" not in health.text and "run_dir" not in health.json()


def test_health_metrics_and_openapi(run_dir):
    with client(run_dir) as c:
        health = c.get("/health").json()
        c.post("/rerank", json=step5_query(np.random.default_rng(10), "q-m", 4, labels=False))
        c.post("/rerank", json={"nope": 1})
        metrics = c.get("/metrics")
        spec = c.get("/openapi.json").json()
    assert health["model_id"] == f"lambdamart:{run_dir.name}" and health["model_kind"] == "lambdamart"
    assert len(health["model_version"]) == 12 and health["uptime_s"] >= 0
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'mmrank_requests_total{code="200",route="/rerank"} 1.0' in text
    assert 'mmrank_requests_total{code="422",route="/rerank"} 1.0' in text
    assert 'mmrank_rerank_queries_total{status="reranked"} 1.0' in text
    assert 'mmrank_request_latency_seconds_count{route="/rerank"} 2.0' in text
    assert f'mmrank_model_info{{model_id="lambdamart:{run_dir.name}",version="{health["model_version"]}"}} 1.0' in text
    assert {"/rerank", "/health", "/metrics", "/admin/reload"} <= set(spec["paths"])
    assert "RerankRequest" in spec["components"]["schemas"]


def test_serving_never_imports_the_training_stack(run_dir, cotrr_run_dir):
    code = (
        "import sys; from mmrank.serve.app import create_app, ServeConfig; "
        "from mmrank.serve.model_slot import ModelSlot, load_run; "
        f"create_app(ModelSlot(load_run({str(run_dir)!r})), ServeConfig()); "
        f"load_run({str(cotrr_run_dir)!r}); "
        "import mmrank.serve.batch, mmrank.cli.serve_cmds; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def cotrr_run_dir(tmp_path_factory) -> Path:
    """A tiny CoTRR (untrained weights, dropout 0.5): real MC-dropout, no training needed."""
    from mmrank.data.model import concat_ranking_sets
    from mmrank.models.cotrr import CoTRR

    rng = np.random.default_rng(11)
    rset = concat_ranking_sets([ranking_set_of(step5_query(rng, f"c{i}", 6)) for i in range(4)])
    run = tmp_path_factory.mktemp("cotrr") / "run"
    CoTRR(d_model=16, n_heads=2, n_layers=1, mlp_hidden=16, dropout=0.5).prepare(rset).save(run)
    return run


def test_loading_a_cotrr_run_for_serving_prepares_its_fast_scoring_path(cotrr_run_dir):
    from mmrank.runs import load_model

    assert not load_model(cotrr_run_dir).fused_scorer().prepared  # plain loading leaves it to the first score
    assert load_run(cotrr_run_dir).ranker.fused_scorer().prepared  # serving does it before the first request


def test_mc_dropout_uncertainty_of_a_real_cotrr_decides_the_fallback(cotrr_run_dir):
    req = step5_query(np.random.default_rng(12), "q-cotrr", 8, labels=False)
    ranker = load_run(cotrr_run_dir).ranker
    mean, std = ranker.score_with_uncertainty(ranking_set_of(req), 5)
    u = float(np.mean(std))
    assert u > 0
    for threshold, status in ((u * 0.5, "fallback"), (u * 2.0, "reranked")):
        policy = RerankPolicy(timeout_ms=10_000, uncertainty_threshold=threshold, mc_passes=5)
        with client(cotrr_run_dir, policy=policy) as c:
            body = c.post("/rerank", json=req).json()
        assert body["status"] == status and body["uncertainty"] == pytest.approx(u, rel=1e-6)
        assert_permutation(req, body)
        if status == "reranked":  # ordered by the MC-dropout mean
            assert [c["score"] for c in body["candidates"]] == pytest.approx(sorted(mean, reverse=True), rel=1e-5)
        else:
            assert body["reason"] == "uncertainty" and returned_ids(body) == original_ids(req)


def test_ids_are_echoed_exactly_as_sent(run_dir):
    """Issue 14 (8): 1.0 stays 1.0 (not 1), ints stay ints, strings stay strings."""
    req = step5_query(np.random.default_rng(14), "q", 4, labels=False)
    req["query_id"] = 7.0
    for c, cid in zip(req["candidates"], [1.0, 2.0, 3, "4"]):
        c["candidate_id"] = cid
    with client(run_dir) as c:
        r = c.post("/rerank", content=json.dumps(req).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert '"query_id":7.0' in r.text
    by_rank = {c["original_rank"]: c["candidate_id"] for c in r.json()["candidates"]}
    assert [by_rank[k] for k in (1, 2, 3, 4)] == [1.0, 2.0, 3, "4"]
    assert all(type(a) is type(b) for a, b in zip([by_rank[k] for k in (1, 2, 3, 4)], [1.0, 2.0, 3, "4"]))
    assert re.search(r'"candidate_id":1\.0\b', r.text) and re.search(r'"candidate_id":2\.0\b', r.text)


def test_messages_say_what_is_wrong(run_dir):
    """Issue 14 (8): a non-JSON reload body, an empty query id, a candidate without an id."""
    good = step5_query(np.random.default_rng(15), "q", 3, labels=False)
    with client(run_dir, token="t") as c:
        auth = {"Authorization": "Bearer t"}
        not_json = c.post("/admin/reload", content=b"run_b", headers={**auth, "content-type": "application/json"})
        empty_qid = c.post("/rerank", json={**good, "query_id": ""}, headers=auth)
        no_cid = c.post("/rerank", json={**good, "candidates": [{"candidate_id": ""}]}, headers=auth)
    assert not_json.status_code == 422
    assert not_json.json()["errors"][0]["field"] == "body" and not_json.json()["detail"].startswith("body: not valid JSON")
    assert empty_qid.status_code == 422 and empty_qid.json()["detail"].startswith("query_id is an empty string — give every query")
    assert no_cid.status_code == 422
    assert "candidate 0 candidate_id is an empty string — give every candidate a candidate_id" in no_cid.json()["detail"]


class RaisesWithPath:
    """A model whose error names the file it read: the answer must not show the server's path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def score(self, rset):
        raise OSError(f"cannot read {self.root / 'run_x' / 'model.safetensors'}")


def test_a_model_error_detail_shows_no_server_path(tmp_path):
    ranker = RaisesWithPath(tmp_path)
    slot = ModelSlot(LoadedModel(ranker=ranker, run_dir=tmp_path / "run_x", kind="t", model_id="t:run_x", version="v", loaded_at=time.time()))
    with TestClient(create_app(slot, ServeConfig(policy=RerankPolicy(timeout_ms=5000)))) as c:
        body = c.post("/rerank", json=step5_query(np.random.default_rng(16), "q", 3, labels=False)).json()
    assert body["reason"] == "model_error" and "<models-root>/run_x/model.safetensors" in body["detail"]
    assert str(tmp_path) not in body["detail"]

