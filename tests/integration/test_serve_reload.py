"""Acceptance: POST /admin/reload swaps models while 4 clients keep sending — no request fails,
every answer is a permutation, and answers come from both models (each answer from one whole
model: its scores are exactly that model's)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from mmrank.serve.model_slot import load_run
from mmrank.serve.records import ranking_set_of
from serve_support import ServerProcess, assert_permutation, step5_query, train_run

MAX_REQUESTS_PER_CLIENT = 400
MAX_SECONDS = 60.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("reload")
    return train_run(d / "run_a", seed=0), train_run(d / "run_b", seed=1)


def test_reload_under_load_drops_nothing(runs, tmp_path):
    run_a, run_b = runs
    token = tmp_path / "token.txt"
    token.write_text("reload-secret\n")
    auth = {"Authorization": "Bearer reload-secret"}
    query = step5_query(np.random.default_rng(0), "q-reload", 40, labels=False)
    expected_scores = {}
    for run in runs:
        loaded = load_run(run)
        expected_scores[loaded.version] = sorted(loaded.ranker.score(ranking_set_of(query)), reverse=True)
    assert len(expected_scores) == 2
    stop = threading.Event()

    with ServerProcess(run_a, "--token-file", str(token), "--timeout-ms", "5000") as server:

        def client_loop():
            seen = []
            deadline = time.monotonic() + MAX_SECONDS
            with httpx.Client(base_url=server.url, headers=auth, timeout=30.0) as client:
                for _ in range(MAX_REQUESTS_PER_CLIENT):
                    if stop.is_set() or time.monotonic() > deadline:
                        break
                    try:
                        r = client.post("/rerank", json=query)
                        seen.append((r.status_code, r.json()))
                    except httpx.HTTPError as e:  # a dropped connection is a failed request
                        seen.append((None, repr(e)))
            return seen

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client_loop) for _ in range(4)]
            reloads = []
            with httpx.Client(base_url=server.url, headers=auth, timeout=60.0) as admin:
                for run in [run_b, run_a, run_b, run_a, run_b]:
                    time.sleep(0.3)
                    reloads.append(admin.post("/admin/reload", json={"run_dir": str(run)}))
                time.sleep(0.3)
                final = admin.get("/health").json()
            stop.set()
            answers = [a for f in futures for a in f.result()]

    assert [r.status_code for r in reloads] == [200] * 5
    assert final["model_version"] == reloads[-1].json()["model_version"]
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:3]
    assert len(answers) >= 100
    versions = set()
    for _, body in answers:
        assert_permutation(query, body)
        assert body["status"] == "reranked"
        versions.add(body["model_version"])
        # one whole model per answer: the scores are exactly the version's own
        assert [c["score"] for c in body["candidates"]] == pytest.approx(expected_scores[body["model_version"]])
    assert versions == set(expected_scores)
