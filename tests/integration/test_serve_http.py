"""Acceptance: the real server (`mmrank serve` in a subprocess, free loopback port) answers 1,000
requests — valid, malformed, schema-breaking and oversized — with the right status codes, no 5xx,
and every 200 a permutation of the request's candidates; /metrics counts agree."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve_support import ServerProcess, assert_permutation, step5_query, train_run

N_REQUESTS = 1000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("http") / "run", seed=0)


def build_requests(rng: np.random.Generator) -> list[tuple[str, bytes, int, dict | None]]:
    """(kind, body, expected status, the query for 200s) for N_REQUESTS requests."""
    too_many = json.dumps(step5_query(rng, "too-many", 151, dims={"image": 1, "text": 1}, labels=False)).encode()
    too_fat = json.dumps(step5_query(rng, "too-fat", 100, dims={"image": 1000, "text": 4}, labels=False)).encode()
    assert len(too_fat) > 512 * 1024
    dup = step5_query(rng, "dup", 4, labels=False)
    dup["candidates"][2]["candidate_id"] = dup["candidates"][0]["candidate_id"]
    no_id = step5_query(rng, "noid", 3, labels=False)
    del no_id["candidates"][1]["candidate_id"]
    out = []
    for i in range(N_REQUESTS):
        k = i % 20
        if k == 0:
            out.append(("too_many_candidates", too_many, 413, None))
        elif k == 1:
            out.append(("body_too_large", too_fat, 413, None))
        elif k == 2:
            out.append(("malformed_json", b'{"query_id": "x", "candidates": [{"candidate_id": ', 422, None))
        elif k == 3:
            out.append(("missing_field", json.dumps(no_id).encode(), 422, None))
        elif k == 4:
            out.append(("wrong_type", json.dumps({"query_id": "t", "candidates": "abc"}).encode(), 422, None))
        elif k == 5:
            out.append(("duplicate_ids", json.dumps(dup).encode(), 422, None))
        else:
            q = step5_query(rng, f"q{i}", int(rng.integers(1, 101)), labels=False)
            out.append(("valid", json.dumps(q).encode(), 200, q))
    return out


def test_thousand_requests_status_codes_and_permutations(run_dir):
    requests = build_requests(np.random.default_rng(0))
    with ServerProcess(run_dir, "--max-candidates", "150", "--max-body-mb", "0.5", "--timeout-ms", "1000") as server:

        def send(chunk):
            results = []
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                for kind, body, expected, query in chunk:
                    r = client.post("/rerank", content=body, headers={"content-type": "application/json"})
                    results.append((kind, expected, query, r.status_code, r.json()))
            return results

        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            results = [r for part in pool.map(send, [requests[i::4] for i in range(4)]) for r in part]
        elapsed = time.monotonic() - start
        metrics = httpx.get(server.url + "/metrics").text

    assert len(results) == N_REQUESTS and elapsed < 240
    wrong = [(kind, expected, got) for kind, expected, _, got, _ in results if got != expected]
    assert not wrong, wrong[:5]
    statuses = {}
    for kind, _, query, code, body in results:
        if code == 200:
            assert_permutation(query, body)
            statuses[(body["status"], body["reason"])] = statuses.get((body["status"], body["reason"]), 0) + 1
        elif code == 422:
            assert body["detail"] and isinstance(body["errors"], list)
    assert set(statuses) <= {("reranked", "ok"), ("fallback", "timeout")}
    assert statuses.get(("reranked", "ok"), 0) >= 0.95 * sum(statuses.values())
    counts = {code: sum(1 for r in results if r[3] == code) for code in (200, 413, 422)}
    assert counts == {200: 700, 413: 100, 422: 200}
    for code, n in counts.items():
        found = re.search(rf'mmrank_requests_total{{code="{code}",route="/rerank"}} ([0-9.]+)', metrics)
        assert found and float(found.group(1)) == n
    assert 'code="5' not in metrics


def test_shadow_server_logs_the_model_order_and_returns_the_original(run_dir):
    query = step5_query(np.random.default_rng(1), "q-shadow-log", 12, labels=False)
    with ServerProcess(run_dir, "--shadow", "--timeout-ms", "2000") as server:
        body = httpx.post(server.url + "/rerank", json=query, timeout=30.0).json()
    logged = [json.loads(line.split(" mmrank.serve ", 1)[1]) for line in server.output().splitlines()
              if " mmrank.serve " in line]
    assert (body["status"], body["reason"]) == ("shadow", "shadow_mode")
    assert [c["candidate_id"] for c in body["candidates"]] == [c["candidate_id"] for c in query["candidates"]]
    by_score = sorted(body["candidates"], key=lambda c: -c["score"])  # the model's order, from its scores
    assert logged == [{"event": "shadow", "query_id": "q-shadow-log", "model_order": [c["candidate_id"] for c in by_score]}]


def test_workers_share_one_port_and_refuse_reload(run_dir, tmp_path):
    """`mmrank serve --workers 2`: two processes answer on one port (each /health names its pid,
    both seen over fresh connections), every answer is a permutation of its request, each
    process's /metrics counts its own requests, the A/B log gets one whole line per answer from
    both, and /admin/reload is refused (409) rather than swapping the model in one process only."""
    token = tmp_path / "token.txt"
    token.write_text("s3cret\n")
    ab_log = tmp_path / "ab.jsonl"
    rng = np.random.default_rng(7)
    queries = [step5_query(rng, f"w{i}", 60, labels=False) for i in range(40)]
    auth = {"authorization": "Bearer s3cret"}
    with ServerProcess(run_dir, "--workers", "2", "--token-file", str(token), "--ab-log", str(ab_log),
                       "--timeout-ms", "5000") as server:
        pids = set()
        for _ in range(200):  # bounded; each request on a new connection, taken by either worker
            pids.add(httpx.get(server.url + "/health", headers={"connection": "close"}, timeout=10).json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2 and server.proc.pid not in pids, pids
        for q in queries:
            r = httpx.post(server.url + "/rerank", json=q, headers={**auth, "connection": "close"}, timeout=30)
            assert r.status_code == 200
            assert_permutation(q, r.json())
        scraped = {}
        for _ in range(200):
            text = httpx.get(server.url + "/metrics", headers={"connection": "close"}, timeout=10).text
            pid = re.search(r"^mmrank_worker_pid ([0-9.e+]+)$", text, re.M).group(1)
            found = re.search(r'mmrank_requests_total{code="200",route="/rerank"} ([0-9.]+)', text)
            scraped[pid] = float(found.group(1)) if found else 0.0
            if len(scraped) == 2:
                break
        assert len(scraped) == 2 and sum(scraped.values()) == len(queries), scraped
        reload = httpx.post(server.url + "/admin/reload", json={"run_dir": run_dir.name}, headers=auth, timeout=30)
        assert reload.status_code == 409 and "--workers 2" in reload.json()["detail"]
    lines = ab_log.read_text().splitlines()
    assert sorted(json.loads(line)["query_id"] for line in lines) == sorted(q["query_id"] for q in queries)
