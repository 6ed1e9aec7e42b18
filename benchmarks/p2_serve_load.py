"""P2: serving latency under a bounded loopback load, and batch rerank throughput.

HTTP: ``mmrank serve`` (real LambdaMART run, uvicorn, one process) in a child process on a free
127.0.0.1 port; 4 concurrent closed-loop clients (asyncio + httpx, one process) POST
100-candidate Step5 queries for ``--seconds`` (≤ 60) after a warm-up. Reports p50/p95/p99,
throughput, errors, 5xx, and checks that every answer is a permutation of its request. Alongside
them, ``--hostile-clients`` (default 1) loop on bad behaviour: hang up mid-body, send broken JSON,
send too many candidates; the server's own /metrics must then show zero 5xx and count the hang-ups
as 499 (client closed), not as server errors. Every loop stops at the deadline.

Batch: ``mmrank.serve.batch.rerank_file`` over a generated Step5 file of ``--batch-queries``
100-candidate queries (top-M 20 and all 100), queries/s.

The model is LambdaMART trained here on synthetic Step5-shaped data (``--trees`` trees,
31 leaves) — serving cost depends on the model's size and the request's size, not on what it
learned. Writes benchmarks/results/serving.md (and re-assembles BENCHMARKS.md).

    python benchmarks/p2_serve_load.py --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the serving tests' helpers
from common import RESULTS, command_line, stamp  # noqa: E402
from serve_support import ServerProcess, assert_permutation, step5_query  # noqa: E402

CLIENTS = 4
CANDIDATES = 100


def train(run_dir: Path, dims: dict, trees: int) -> Path:
    from mmrank.data.model import concat_ranking_sets
    from mmrank.models.baselines import LambdaMART
    from mmrank.serve.records import ranking_set_of

    rng = np.random.default_rng(0)
    rset = concat_ranking_sets([ranking_set_of(step5_query(rng, f"t{q}", 50, dims)) for q in range(200)])
    LambdaMART(n_estimators=trees, early_stopping_rounds=trees, num_leaves=31, num_threads=1).fit(rset).save(run_dir)
    return run_dir


HOSTILE_MAX_PER_CLIENT = 20_000  # a bound besides the deadline


async def hostile(port: int, end: float, too_many: bytes) -> dict:
    """One client that misbehaves in turn until ``end``: aborts mid-body, broken JSON (expect
    422), too many candidates (expect 413). Returns what it did and what it was answered."""
    import httpx

    done = {"aborted": 0, "broken_json": 0, "too_many": 0, "unexpected": 0}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
        for k in range(HOSTILE_MAX_PER_CLIENT):
            if time.perf_counter() >= end:
                break
            if k % 3 == 0:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /rerank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                             b"content-length: 20000\r\n\r\n" + b'{"query_id": "gone", "candidates": [' + b" " * 1000)
                await writer.drain()
                writer.close()  # gone before the body is complete
                await writer.wait_closed()
                done["aborted"] += 1
            else:
                body, want, key = (b'{"query_id": "x", "candidates": [', 422, "broken_json") if k % 3 == 1 else (too_many, 413, "too_many")
                r = await http.post("/rerank", content=body, headers={"content-type": "application/json"})
                done[key] += 1
                done["unexpected"] += r.status_code != want
            await asyncio.sleep(0.01)
    return done


def server_codes(url: str) -> dict[str, float]:
    """The server's own request counts by status code, all routes together (from /metrics)."""
    import httpx

    codes: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("mmrank_requests_total{"):
            code = line.split('code="', 1)[1].split('"', 1)[0]
            codes[code] = codes.get(code, 0.0) + float(line.rsplit(" ", 1)[1])
    return codes


async def load(url: str, queries: list[tuple[dict, bytes]], seconds: float, warmup: float, n_hostile: int = 0,
               too_many: bytes = b"") -> dict:
    import httpx

    latencies, codes, statuses, violations = [], {}, {}, 0
    start = time.perf_counter()
    end_warmup, end = start + warmup, start + warmup + seconds

    async def client(k: int) -> None:
        nonlocal violations
        i = k
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            while (now := time.perf_counter()) < end:
                query, body = queries[i % len(queries)]
                i += CLIENTS
                t0 = time.perf_counter()
                try:
                    r = await http.post("/rerank", content=body, headers={"content-type": "application/json"})
                    code, answer = r.status_code, (r.json() if r.status_code == 200 else None)
                except httpx.HTTPError:
                    code, answer = "transport error", None
                t1 = time.perf_counter()
                if now < end_warmup:
                    continue
                latencies.append(t1 - t0)
                codes[code] = codes.get(code, 0) + 1
                if answer is not None:
                    try:
                        assert_permutation(query, answer)
                    except AssertionError:
                        violations += 1
                    key = f'{answer["status"]}/{answer["reason"]}'
                    statuses[key] = statuses.get(key, 0) + 1

    port = int(url.rsplit(":", 1)[1])
    results = await asyncio.gather(*(client(k) for k in range(CLIENTS)), *(hostile(port, end, too_many) for _ in range(n_hostile)))
    bad = {k: sum(r[k] for r in results[CLIENTS:]) for k in ("aborted", "broken_json", "too_many", "unexpected")}
    lat = np.array(latencies) * 1000
    return {
        "hostile": bad,
        "requests": len(lat), "seconds": seconds, "throughput": len(lat) / seconds,
        "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99)),
        "max": float(lat.max()), "codes": codes, "statuses": statuses, "violations": violations,
        "errors": sum(v for c, v in codes.items() if c != 200),
        "5xx": sum(v for c, v in codes.items() if isinstance(c, int) and c >= 500),
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc): what a request costs, whatever the
    contention on the box did to the wall-clock latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_answered(url: str) -> int:
    import httpx

    text = httpx.get(url + "/metrics").text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('mmrank_requests_total{') and 'route="/rerank"' in line))


def batch_throughput(run_dir: Path, dims: dict, n_queries: int, work: Path) -> list[dict]:
    from mmrank.serve.batch import rerank_file
    from mmrank.serve.policy import RerankPolicy
    from mmrank.serve.model_slot import load_run

    rng = np.random.default_rng(1)
    src = work / "scored.jsonl"
    with open(src, "w") as f:
        for q in range(n_queries):
            f.write(json.dumps(step5_query(rng, f"b{q}", CANDIDATES, dims, labels=False)) + "\n")
    ranker = load_run(run_dir).ranker
    rows = []
    for top_m in (20, CANDIDATES):
        t0 = time.perf_counter()
        summary = rerank_file(ranker, src, work / f"out{top_m}.jsonl", RerankPolicy(top_m=top_m))
        dt = time.perf_counter() - t0
        assert summary.queries_written == n_queries and summary.status.get("reranked") == n_queries
        rows.append({"top_m": top_m, "queries": n_queries, "seconds": dt, "qps": n_queries / dt,
                     "mb": src.stat().st_size / 1e6})
    return rows


def measure(dims: dict, args, seconds: float) -> tuple[dict, list[dict], float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = train(work / "run", dims, args.trees)
        rng = np.random.default_rng(2)
        queries = [step5_query(rng, f"q{i}", CANDIDATES, dims, labels=False) for i in range(256)]
        queries = [(q, json.dumps(q).encode()) for q in queries]
        body_kb = float(np.mean([len(b) for _, b in queries]) / 1024)
        too_many = json.dumps(step5_query(rng, "too-many", 1001, {"image": 1, "text": 1}, labels=False)).encode()
        with ServerProcess(run_dir, "--timeout-ms", str(args.timeout_ms), "--max-candidates", "1000") as server:
            cpu0 = process_cpu_s(server.proc.pid)
            http = asyncio.run(load(server.url, queries, seconds, args.warmup, args.hostile_clients, too_many))
            http["server_codes"] = server_codes(server.url)
            http["server_5xx"] = sum(v for c, v in http["server_codes"].items() if c.startswith("5"))
            # CPU the server spent per request (warm-up requests included in both counts' spirit:
            # divided by every request it answered, read from its own request counter)
            answered = requests_answered(server.url)
            http["server_cpu_ms"] = (process_cpu_s(server.proc.pid) - cpu0) * 1000 / max(answered, 1)
        batch = batch_throughput(run_dir, dims, args.batch_queries, work)
    return http, batch, body_kb


def hostile_cell(http: dict) -> str:
    """What the hostile clients did, and how the server counted it (499 = client closed)."""
    h, codes = http["hostile"], http["server_codes"]
    return (f"{h['aborted']} hang-ups → {codes.get('499', 0):.0f} counted 499; {h['broken_json']} broken JSON, "
            f"{h['too_many']} too many candidates ({h['unexpected']} answered otherwise than 422/413)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured load duration per configuration (max 60)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--dims", default="64x64,8x8", help="image x text feature dims, one configuration per comma")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--timeout-ms", type=float, default=50.0)
    ap.add_argument("--batch-queries", type=int, default=1000)
    ap.add_argument("--hostile-clients", type=int, default=1, help="clients that hang up mid-body and send bad requests meanwhile")
    ap.add_argument("--load-note", default="", help="what else ran on the box (written with the results)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/serving.md")
    args = ap.parse_args()
    seconds = min(args.seconds, 60.0)
    load_note = f", {args.load_note}" if args.load_note else ""
    http_rows, batch_rows = [], []
    for spec in args.dims.split(","):
        image, text = (int(x) for x in spec.split("x"))
        http, batch, body_kb = measure({"image": image, "text": text}, args, seconds)
        print(json.dumps({"dims": spec, "http": http, "batch": batch}, default=str))
        met = http["p95"] <= 25.0 and http["5xx"] == 0 and http["server_5xx"] == 0 and http["violations"] == 0
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(http["statuses"].items()))
        http_rows.append(
            f"| {image} + {text} | {body_kb:.0f} | {http['requests']} | {http['throughput']:.1f} | {http['p50']:.1f} | "
            f"{http['p95']:.1f} | {http['p99']:.1f} | {http['server_cpu_ms']:.1f} | {http['errors']} | {http['5xx']} | {http['violations']} | {statuses} | "
            f"{hostile_cell(http)} | {http['server_5xx']:.0f} | "
            f"{'met' if met else 'not met'} |\n"
        )
        batch_rows += [f"| {image} + {text} | {r['top_m']} | {r['queries']} | {r['mb']:.0f} | {r['seconds']:.2f} | {r['qps']:.0f} |\n" for r in batch]
    md = f"""## Serving (P2): HTTP latency under load, batch rerank throughput

Command: `{command_line()}` — {stamp()}; 2-core CPU dev box{load_note} (the load clients run on the
same 2 cores as the server).

Model: LambdaMART ({args.trees} trees, 31 leaves) trained on synthetic Step5-shaped data; requests are
Step5 queries of {CANDIDATES} candidates with image + text feature vectors of the dims below, a
compliance score and a raw score. Server: `mmrank serve` (one uvicorn process, --timeout-ms {args.timeout_ms:g}).
Load: {CLIENTS} concurrent closed-loop clients (asyncio + httpx, one process) on 127.0.0.1 for {seconds:g} s
per row after a {args.warmup:g} s warm-up; every 200 answer checked to be a permutation of its request.
Meanwhile {args.hostile_clients} hostile client(s) on the same loopback, in turn: hang up mid-body, send broken JSON,
send 1,001 candidates (limit 1,000). "Server 5xx" is read from the server's own `/metrics` (all routes,
hostile requests included); a hang-up must be counted `499` (client closed), not 5xx.
Goal: p95 ≤ 25 ms and zero 5xx. "Server CPU ms/request" is the server process's user+system CPU
time over the run divided by the /rerank requests it answered (warm-up included): the cost of a
request independent of how much of the shared CPU the server got.

| dims (image + text) | body KiB | requests | req/s | p50 ms | p95 ms | p99 ms | server CPU ms/request | non-200 | 5xx | permutation violations | answers | hostile clients | server 5xx | goal |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{''.join(http_rows)}
Where a request's CPU goes, and what would bring p95 under 25 ms: docs/serving.md, "Performance".

Batch (`mmrank rerank` path: `rerank_file` in-process, streaming, 64 queries per model call):

| dims (image + text) | top-M | queries | JSONL MB | seconds | queries/s |
|---|---|---|---|---|---|
{''.join(batch_rows)}"""
    print(md)
    if not args.no_write:  # BENCHMARKS.md is re-assembled from the results by benchmarks/common.py's assemble()
        (RESULTS / "serving.md").write_text(md.rstrip() + "\n")
        print("wrote", RESULTS / "serving.md")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
