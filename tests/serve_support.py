"""Helpers for the serving tests: Step5-shaped queries, a tiny trained LambdaMART run, a real
server in a subprocess on a free loopback port. (Plain module, not a conftest: only the serving
tests use it.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

DIMS = {"image": 6, "text": 4}


def step5_query(rng: np.random.Generator, query_id: str, n: int, dims: dict | None = None, labels: bool = True) -> dict:
    """One query in the seeds' Step5 shape, first-stage order = descending raw_score."""
    dims = dims or DIMS
    raw = np.sort(rng.normal(size=n))[::-1]
    cands = []
    for j in range(n):
        c = {"candidate_id": f"{query_id}-c{j}", "raw_score": float(raw[j]), "compliance_score": float(rng.random())}
        for name, d in dims.items():
            c[f"{name}_features"] = [round(float(x), 4) for x in rng.normal(size=d)]
        if labels:
            c["relevance_score"] = int(rng.integers(0, 3))
        cands.append(c)
    return {"query_id": query_id, "query_text": f"text of {query_id}", "candidates": cands}


def train_run(run_dir: Path, seed: int = 0, n_queries: int = 40, per_query: int = 15, dims: dict | None = None) -> Path:
    """A real LambdaMART run on Step5-shaped toy data of feature ``dims`` (seconds; one thread)."""
    from mmrank.data.model import concat_ranking_sets
    from mmrank.models.baselines import LambdaMART
    from mmrank.serve.records import ranking_set_of

    rng = np.random.default_rng(seed)
    rset = concat_ranking_sets([ranking_set_of(step5_query(rng, f"train{q}", per_query, dims)) for q in range(n_queries)])
    LambdaMART(n_estimators=15, num_leaves=7, min_data_in_leaf=5, num_threads=1, seed=seed).fit(rset).save(run_dir)
    return run_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``mmrank serve`` in a subprocess (through the real CLI command), stopped on exit."""

    def __init__(self, run_dir: Path, *args: str, startup_s: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = "import sys; from mmrank.cli.app import app; import mmrank.cli.serve_cmds; sys.exit(app())"
        self.cmd = [sys.executable, "-c", code, "serve", "--model", str(run_dir), "--port", str(self.port), *args]
        self.startup_s = startup_s

    def __enter__(self) -> "ServerProcess":
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        # A file, not a pipe: a chatty server (shadow logs) would block once a pipe's buffer filled.
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server did not answer /health within {self.startup_s} s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


def assert_permutation(request: dict, response: dict) -> None:
    """The response's candidates are exactly the request's, each once, ranks 1..n, original ranks right."""
    sent = [c["candidate_id"] for c in request["candidates"]]
    got = [c["candidate_id"] for c in response["candidates"]]
    assert sorted(map(str, got)) == sorted(map(str, sent)), "candidates lost, added or duplicated"
    assert [c["rank"] for c in response["candidates"]] == list(range(1, len(sent) + 1))
    for c in response["candidates"]:
        assert sent[c["original_rank"] - 1] == c["candidate_id"]
