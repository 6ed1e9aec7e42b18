"""The real server (`mmrank serve` in a subprocess, loopback only) against hostile clients: a
300,000-candidate body must not stall /health, a client that hangs up mid-body is not a 5xx,
slow or stuck clients are dropped after --read-timeout-s while normal ones stay fast, and /docs
does not load anything from the internet. Every loop here is bounded."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve_support import ServerProcess, assert_permutation, step5_query, train_run

READ_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("edges") / "run", seed=0)


# Both HTTP parsers uvicorn can run: each has its own header deadline (mmrank.serve.slow_clients).
PARSERS = ["h11", pytest.param("httptools", marks=pytest.mark.skipif(
    importlib.util.find_spec("httptools") is None, reason="httptools not installed"))]


@pytest.fixture(scope="module", params=PARSERS)
def server(run_dir, request):
    with ServerProcess(run_dir, "--timeout-ms", "2000", "--read-timeout-s", str(READ_TIMEOUT_S), "--http", request.param) as s:
        yield s


def metric(server, code: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    found = re.search(rf'mmrank_requests_total{{code="{code}",route="/rerank"}} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


def test_health_answers_within_100ms_while_a_300k_candidate_body_is_refused(server):
    """Issue 14 (5): 300,000 id-only candidates, under the 8 MB body limit."""
    body = json.dumps({"query_id": "huge", "candidates": [{"candidate_id": str(i)} for i in range(300_000)]}).encode()
    assert 7e6 < len(body) < 8 * 1024 * 1024
    result = {}

    def post_huge():
        t0 = time.perf_counter()
        r = httpx.post(server.url + "/rerank", content=body, headers={"content-type": "application/json"}, timeout=60)
        result.update(code=r.status_code, detail=r.json()["detail"], seconds=time.perf_counter() - t0)

    health_s = []
    with httpx.Client(base_url=server.url, timeout=10) as probe:
        probe.get("/health")  # connection open and warm
        sender = threading.Thread(target=post_huge)
        sender.start()
        for _ in range(400):  # bounded: at most 400 probes, stops when the big request is answered
            t0 = time.perf_counter()
            assert probe.get("/health").status_code == 200
            health_s.append(time.perf_counter() - t0)
            if not sender.is_alive():
                break
            time.sleep(0.005)
        sender.join(timeout=60)
    assert result["code"] == 413 and "300000 candidate ids, more than the limit 1000" in result["detail"]
    assert len(health_s) >= 2
    assert max(health_s) < 0.100, f"/health took up to {max(health_s) * 1000:.0f} ms (refused in {result['seconds']:.2f} s)"


def test_a_client_that_hangs_up_mid_body_is_counted_as_499_not_500(server):
    """Issue 14 (6)."""
    before_499, before_500 = metric(server, "499"), metric(server, "500")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /rerank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: 5000\r\n\r\n" + b'{"query_id": "gone", "candidates": [')
            time.sleep(0.1)
    deadline = time.monotonic() + 10
    while metric(server, "499") < before_499 + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "499") == before_499 + 3
    assert metric(server, "500") == before_500 == 0


def _closed_by_server(sock: socket.socket, within_s: float) -> tuple[bool, bytes]:
    """Read until the server closes (b'' from recv) or ``within_s`` passes."""
    sock.settimeout(0.2)
    data, deadline = b"", time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


SLOW_STARTS = [
    b"POST /rerank HTTP/1.1\r\nhost: x\r\n",  # headers never finished
    b"POST /rer",  # request line never finished
    b"",  # connected, says nothing
    b"POST /rerank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 900\r\n\r\n{",  # body stalls
    b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n",  # one good request, then silence... then a partial one
    b"POST /rerank HTTP/1.1\r\nhost: x\r\ncontent-length: 900\r\n\r\n" + b" " * 100,  # body trickles
]


def test_slow_clients_are_dropped_and_normal_clients_stay_fast(server):
    """Issue 14 (7): six stuck sockets are closed by the server within --read-timeout-s (+ slack),
    each with a 408; good requests meanwhile stay fast."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in SLOW_STARTS]
    for s, start in zip(socks, SLOW_STARTS):
        if start:
            s.sendall(start)
    socks[4].recv(4096)  # the good request's answer
    socks[4].sendall(b"POST /rerank HTTP/1.1\r\nho")
    socks[5].sendall(b" " * 10)  # one more trickle, then nothing
    query = step5_query(np.random.default_rng(0), "during", 30, labels=False)
    good_s = []
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for _ in range(20):  # bounded
            t0 = time.perf_counter()
            r = c.post("/rerank", json=query)
            good_s.append(time.perf_counter() - t0)
            assert r.status_code == 200
            assert_permutation(query, r.json())
    outcomes = [_closed_by_server(s, READ_TIMEOUT_S + 6) for s in socks]
    for s in socks:
        s.close()
    assert all(closed for closed, _ in outcomes), [closed for closed, _ in outcomes]
    for k, (_, data) in enumerate(outcomes):  # each was told why before the close
        assert data.rsplit(b"HTTP/1.1 ", 1)[-1].startswith(b"408 "), (k, data[-300:])  # the last answer
    assert max(good_s) < 1.0, good_s
    assert metric(server, "408") >= 2  # the two stalled bodies were answered by the app, and counted


def test_docs_are_off_by_default_and_the_schema_is_served(server):
    """Issue 14 (8): /docs would load Swagger UI from a CDN; it is opt-in (--docs)."""
    assert httpx.get(server.url + "/docs", timeout=10).status_code == 404
    assert "/rerank" in httpx.get(server.url + "/openapi.json", timeout=10).json()["paths"]
