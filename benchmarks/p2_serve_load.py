"""P2: serving latency under a bounded loopback load, where a request's time goes, and batch
rerank throughput — for LambdaMART and CoTRR.

HTTP: ``mmrank serve --workers N`` (a real run, uvicorn, N processes on one port) in a child process
on a free 127.0.0.1 port; ``--clients`` concurrent closed-loop clients (asyncio + aiohttp, one
process, one kept-alive connection each, spread evenly over the workers, pre-encoded bodies; answers
checked after the timed window) POST queries for ``--seconds`` (<= 60) after a warm-up. The client's
own CPU per request is measured and reported: it shares the 2 cores with the server.
Reports p50/p95/p99, throughput, errors, 5xx, checks that every answer is a permutation of its
request, and splits the server's time per request by stage from each answer's ``Server-Timing``
header (parse, features, model, serialise; "outside" = client latency minus those: HTTP, event-loop
queueing and the client itself). Alongside, ``--hostile-clients`` (default 1) loop on bad behaviour:
hang up mid-body, send broken JSON, send too many candidates; the servers' own /metrics must then
show zero 5xx and count the hang-ups as 499 (client closed), not as server errors.

Models (``--models``): ``lambdamart`` (``--trees`` trees, 31 leaves, trained on synthetic
Step5-shaped data), ``cotrr`` (the library default: d_model 256, 2 token layers, list context) and
``cotrr-d64`` (the shipped configs' size, configs/mq2008_cotrr.yaml), both with random weights —
serving cost depends on the model's size and the request's size, not on what it learned.
Layouts (``--layouts``): ``64x64`` / ``8x8`` (Step5 image x text dims, 100 candidates, compliance
and raw score) and ``mq2008`` (the real MQ2008 Fold1 test queries, 46-d LETOR vectors in the native
schema; LambdaMART trained on Fold1 train).

Batch (``--batch-queries`` > 0): ``mmrank.serve.batch.rerank_file`` over a generated Step5 file of
100-candidate queries (top-M 20 and all 100), queries/s. Writes benchmarks/results/serving.md.

    python benchmarks/p2_serve_load.py --seconds 30
    python benchmarks/p2_serve_load.py --models cotrr --layouts 64x64 --clients 4,8 --server-workers 1,2
    # same-run comparison with another checkout's server (e.g. main), same venv:
    python benchmarks/p2_serve_load.py --models lambdamart --layouts 64x64 --clients 4 --label main --server-src ../main/src

Short idle-box runs can be joined: each with ``--no-write --out-json PART.json``, then
``--render PART.json ...`` writes serving.md from them (every run's command listed).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
import subprocess
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the serving tests' helpers
from common import RESULTS, command_line, stamp  # noqa: E402
from serve_support import ServerProcess, assert_permutation, step5_query  # noqa: E402

CANDIDATES = 100
STAGES = ("parse", "features", "model", "serialise")
MODELS = ("lambdamart", "cotrr", "cotrr-d64")


# -- runs and requests ---------------------------------------------------------------------------
def step5_set(dims: dict, n_queries: int = 200, seed: int = 0):
    """Synthetic Step5-shaped training data of feature ``dims`` (50 candidates a query)."""
    from mmrank.data.model import concat_ranking_sets
    from mmrank.serve.records import ranking_set_of

    rng = np.random.default_rng(seed)
    return concat_ranking_sets([ranking_set_of(step5_query(rng, f"t{q}", 50, dims)) for q in range(n_queries)])


def mq2008_fold1(data_dir: Path):
    """MQ2008 Fold1 (train, test) from the shared data."""
    from mmrank.data.formats import load_ranking

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["sh", str(data_dir / "ltr" / "make_folds.sh"), tmp], check=True, capture_output=True)
        fold = Path(tmp) / "MQ2008" / "Fold1"
        return [load_ranking(fold / f"{p}.txt", "libsvm", n_features=46) for p in ("train", "test")]


def native_queries(rset) -> list[dict]:
    """Every query of ``rset`` as a native-schema request body (one ``letor`` vector per candidate)."""
    out = []
    for q in range(rset.n_queries):
        a, b = rset.offsets[q], rset.offsets[q + 1]
        out.append({"query_id": str(rset.query_ids[q]), "candidates": [
            {"candidate_id": str(rset.candidate_ids[i]), "features": {m: [round(float(v), 6) for v in x[i]] for m, x in rset.features.items()}}
            for i in range(a, b)]})
    return out


def fit_model(name: str, train, trees: int):
    """The served model ``name`` on ``train`` (CoTRR: built and normalised on it, random weights)."""
    import torch

    from mmrank.models.baselines import LambdaMART
    from mmrank.models.cotrr import CoTRR

    torch.manual_seed(0)
    if name == "lambdamart":
        return LambdaMART(n_estimators=trees, early_stopping_rounds=trees, num_leaves=31, num_threads=1).fit(train)
    if name == "cotrr":
        return CoTRR().prepare(train)
    if name == "cotrr-d64":
        return CoTRR(d_model=64, n_heads=4).prepare(train)
    raise SystemExit(f"--models: unknown model {name!r} — use {', '.join(MODELS)}")


def make_setting(model: str, layout: str, args, work: Path) -> tuple[Path, list[tuple[dict, bytes]], str]:
    """(run folder, request bodies, a line describing the requests) for one model and layout."""
    rng = np.random.default_rng(2)
    if layout == "mq2008":
        train, test = mq2008_fold1(Path(args.data_dir))
        queries = native_queries(test)
        sizes = test.group_sizes
        described = f"MQ2008 Fold1 test, {len(queries)} real queries of {sizes.min()}-{sizes.max()} (mean {sizes.mean():.0f}) 46-d candidates"
    else:
        image, text = (int(x) for x in layout.split("x"))
        dims = {"image": image, "text": text}
        train = step5_set(dims)
        queries = [step5_query(rng, f"q{i}", CANDIDATES, dims, labels=False) for i in range(256)]
        described = f"Step5, {CANDIDATES} candidates, image {image} + text {text} dims"
    run_dir = work / f"run-{model}-{layout}"
    if not run_dir.is_dir() or not any(run_dir.iterdir()):  # --work may hold it from an earlier run
        fit_model(model, train, args.trees).save(run_dir)
    return run_dir, [(q, json.dumps(q).encode()) for q in queries], described


# -- load ------------------------------------------------------------------------------------------
def server_timing(header: str) -> dict[str, float]:
    """``{"parse": ms, ...}`` of a ``Server-Timing: parse;dur=0.41, model;dur=3.2`` header."""
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


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


def worker_metrics(url: str, workers: int, tries: int = 200) -> list[str]:
    """The /metrics text of each of the ``workers`` processes behind ``url`` (one per
    ``mmrank_worker_pid``): each scrape is a new connection, answered by whichever worker accepts it."""
    import httpx

    seen: dict[str, str] = {}
    for _ in range(tries):
        text = httpx.get(url + "/metrics", headers={"connection": "close"}).text
        pid = next((ln.rsplit(" ", 1)[1] for ln in text.splitlines() if ln.startswith("mmrank_worker_pid ")), "?")
        seen[pid] = text
        if len(seen) >= workers:
            break
    return list(seen.values())


def server_codes(texts: list[str]) -> dict[str, float]:
    """The servers' own request counts by status code, all routes together (from /metrics texts)."""
    codes: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith("mmrank_requests_total{"):
                code = line.split('code="', 1)[1].split('"', 1)[0]
                codes[code] = codes.get(code, 0.0) + float(line.rsplit(" ", 1)[1])
    return codes


async def load(urls: list[str], queries: list[tuple[dict, bytes]], seconds: float, warmup: float, clients: int,
               n_hostile: int = 0, too_many: bytes = b"", client_lib: str = "aiohttp", workers: int = 1) -> dict:
    """Closed-loop load on the server(s) at ``urls`` (client k on url k mod N).

    Each client keeps one kept-alive connection and POSTs pre-encoded bodies. ``client_lib``
    ``aiohttp`` (C HTTP parser) reads each answer as bytes and the answers are checked (JSON,
    permutation of the request) after the timed window, so the client's own CPU — on the same 2
    cores as the server — stays small; ``httpx`` is the earlier client (pure-Python HTTP, answers
    parsed and checked inside the loop), kept to show what a heavy client costs. ``client_cpu_ms``
    is this process's CPU per measured request (hostile client included)."""
    latencies, codes, stages, answers = [], {}, [], []
    start = time.perf_counter()
    end_warmup, end = start + warmup, start + warmup + seconds
    headers = {"content-type": "application/json"}
    cpu = {}

    def record(k: int, now: float, t0: float, t1: float, code, qi: int, raw: bytes | None, timing_header: str) -> None:
        if now < end_warmup:
            return
        if "start" not in cpu:
            cpu["start"] = resource.getrusage(resource.RUSAGE_SELF)
        latencies.append(t1 - t0)
        timing = server_timing(timing_header)
        if timing:
            stages.append([timing.get(s, 0.0) for s in STAGES] + [(t1 - t0) * 1e3 - sum(timing.values())])
        codes[code] = codes.get(code, 0) + 1
        if raw is not None:
            answers.append((qi, raw))

    async def session_on_a_free_worker(url: str):
        """A session whose one kept-alive connection is on a worker that has fewer than its share
        of the clients (``workers`` > 1): reconnect until /health names such a worker, as a
        round-robin balancer in front of the workers would place it. Without it the workers'
        shared socket hands each new connection to whichever accepts first, and 4 connections
        over 2 workers land 2-2 only 3 times in 8."""
        import aiohttp

        quota = -(-clients // workers)
        for _ in range(200):  # bounded
            http = aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=1),
                                         timeout=aiohttp.ClientTimeout(total=10.0), skip_auto_headers=("User-Agent",))
            if workers <= 1:
                return http
            async with http.get("/health") as r:
                pid = (await r.json())["pid"]
            if placed.get(pid, 0) < quota:
                placed[pid] = placed.get(pid, 0) + 1
                return http
            await http.close()
        raise RuntimeError(f"could not spread {clients} clients over {workers} workers: {placed}")

    placed: dict[int, int] = {}

    async def aiohttp_client(k: int) -> None:
        import aiohttp

        i = k
        async with await session_on_a_free_worker(urls[k % len(urls)]) as http:
            while (now := time.perf_counter()) < end:
                qi = i % len(queries)
                i += clients
                t0 = time.perf_counter()
                try:
                    async with http.post("/rerank", data=queries[qi][1], headers=headers) as r:
                        raw = await r.read()
                        code, timing = r.status, r.headers.get("server-timing", "")
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    code, raw, timing = "transport error", None, ""
                record(k, now, t0, time.perf_counter(), code, qi, raw if code == 200 else None, timing)

    async def httpx_client(k: int) -> None:
        import httpx

        i = k
        async with httpx.AsyncClient(base_url=urls[k % len(urls)], timeout=10.0) as http:
            while (now := time.perf_counter()) < end:
                qi = i % len(queries)
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await http.post("/rerank", content=queries[qi][1], headers=headers)
                    code, timing = r.status_code, r.headers.get("server-timing", "")
                    if code == 200:
                        r.json()  # as the earlier client did: parse inside the loop
                except httpx.HTTPError:
                    code, timing = "transport error", ""
                record(k, now, t0, time.perf_counter(), code, qi, r.content if code == 200 else None, timing)

    client = {"aiohttp": aiohttp_client, "httpx": httpx_client}[client_lib]
    ports = [int(u.rsplit(":", 1)[1]) for u in urls]
    results = await asyncio.gather(*(client(k) for k in range(clients)),
                                   *(hostile(ports[h % len(ports)], end, too_many) for h in range(n_hostile)))
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu_s = sum(getattr(cpu_end, f) - getattr(cpu.get("start", cpu_end), f) for f in ("ru_utime", "ru_stime"))
    violations, statuses = 0, {}
    for qi, raw in answers:  # after the timed window: the check's CPU does not compete with the server
        answer = json.loads(raw)
        try:
            assert_permutation(queries[qi][0], answer)
        except AssertionError:
            violations += 1
        key = f'{answer["status"]}/{answer["reason"]}'
        statuses[key] = statuses.get(key, 0) + 1
    bad = {k: sum(r[k] for r in results[clients:]) for k in ("aborted", "broken_json", "too_many", "unexpected")}
    st = np.array(stages) if stages else np.zeros((1, len(STAGES) + 1))
    split = {name: {"mean": float(st[:, j].mean()), "p95": float(np.percentile(st[:, j], 95))}
             for j, name in enumerate((*STAGES, "outside"))}
    lat = np.array(latencies) * 1000
    return {
        "hostile": bad, "stages_ms": split, "client": client_lib, "clients_per_worker": sorted(placed.values()),
        "client_cpu_ms": client_cpu_s * 1000 / max(len(lat), 1),
        "requests": len(lat), "seconds": seconds, "throughput": len(lat) / seconds,
        "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99)),
        "max": float(lat.max()), "codes": codes, "statuses": statuses, "violations": violations,
        "errors": sum(v for c, v in codes.items() if c != 200),
        "5xx": sum(v for c, v in codes.items() if isinstance(c, int) and c >= 500),
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (Linux /proc; uvicorn's worker
    processes are children of ``mmrank serve --workers N``): what a request costs, whatever the
    contention on the box did to the wall-clock latency."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that just ended
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rerank_answered(texts: list[str]) -> int:
    """/rerank requests the servers answered (every code), from their /metrics texts."""
    return int(sum(float(line.rsplit(" ", 1)[1]) for text in texts for line in text.splitlines()
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


def measure(model: str, layout: str, args, seconds: float, work: Path) -> list[dict]:
    """Every (clients, server workers) row of one model and layout, and its batch rows."""
    run_dir, queries, described = make_setting(model, layout, args, work)
    body_kb = float(np.mean([len(b) for _, b in queries]) / 1024)
    rng = np.random.default_rng(3)
    too_many = json.dumps(step5_query(rng, "too-many", 1001, {"image": 1, "text": 1}, labels=False)).encode()
    rows = []
    for workers in args.server_workers:
        for clients in args.clients:
            server = ServerProcess(run_dir, "--timeout-ms", str(args.timeout_ms), "--max-candidates", "1000",
                                   *(["--workers", str(workers)] if workers > 1 else []), *args.server_args.split())
            with server_pythonpath(args.server_src), server:
                cpu0 = process_cpu_s(server.proc.pid)
                http = asyncio.run(load([server.url], queries, seconds, args.warmup, clients,
                                        args.hostile_clients, too_many, args.client, workers))
                cpu = process_cpu_s(server.proc.pid) - cpu0
                texts = worker_metrics(server.url, workers)
                http["server_codes"] = server_codes(texts)
                http["server_5xx"] = sum(v for c, v in http["server_codes"].items() if c.startswith("5"))
                # CPU the server processes spent per /rerank request they answered (warm-up and the
                # hostile client's requests included in both counts)
                http["server_cpu_ms"] = cpu * 1000 / max(rerank_answered(texts), 1)
                http["per_worker"] = [rerank_answered([t]) for t in texts]  # /rerank requests each worker answered
            http.update(model=model, layout=layout, described=described, clients=clients, workers=workers, body_kb=body_kb,
                        label=args.label)
            print(json.dumps(http, default=str), flush=True)
            rows.append(http)
    if args.batch_queries and layout != "mq2008":
        image, text = (int(x) for x in layout.split("x"))
        for r in batch_throughput(run_dir, {"image": image, "text": text}, args.batch_queries, work):
            rows.append({**r, "model": model, "layout": layout, "batch": True})
    return rows


@contextmanager
def server_pythonpath(src: str | None):
    """While inside: child processes get ``PYTHONPATH=src`` (e.g. another checkout's ``src``, for a
    same-run comparison of two versions of the server); nothing changes when ``src`` is None."""
    old = os.environ.get("PYTHONPATH")
    if src:
        os.environ["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in src.split(os.pathsep))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def hostile_cell(http: dict) -> str:
    """What the hostile clients did, and how the server counted it (499 = client closed)."""
    h, codes = http["hostile"], http["server_codes"]
    return (f"{h['aborted']} hang-ups → {codes.get('499', 0):.0f} counted 499; {h['broken_json']} broken JSON, "
            f"{h['too_many']} too many candidates ({h['unexpected']} answered otherwise than 422/413)")


def http_row(h: dict) -> str:
    """One markdown row of the HTTP table."""
    met = h["p95"] <= 25.0 and h["5xx"] == 0 and h["server_5xx"] == 0 and h["violations"] == 0
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(h["statuses"].items()))
    st = h["stages_ms"]
    split = " / ".join(f"{st[k]['mean']:.1f}" for k in (*STAGES, "outside"))
    return (f"| {h.get('label') or '-'} | {h['model']} | {h['layout']} | {h['clients']} | {h['workers']} | "
            f"{h.get('client', 'httpx')} | {h['body_kb']:.0f} | {h['requests']} | "
            f"{h['throughput']:.1f} | {h['p50']:.1f} | {h['p95']:.1f} | {h['p99']:.1f} | {h['server_cpu_ms']:.1f} | "
            f"{h.get('client_cpu_ms', float('nan')):.1f} | {split} | "
            f"{h['errors']} | {h['5xx']} | {h['violations']} | {statuses} | {hostile_cell(h)} | {h['server_5xx']:.0f} | "
            f"{'met' if met else 'not met'} |\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured load duration per row (max 60)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--models", default="lambdamart,cotrr,cotrr-d64", help=f"comma-separated: {', '.join(MODELS)}")
    ap.add_argument("--layouts", default="64x64,8x8,mq2008", help="Step5 image x text dims, or mq2008")
    ap.add_argument("--clients", default="4,8", help="concurrent closed-loop clients, one row per value")
    ap.add_argument("--server-workers", default="1", help="server processes (clients spread over them), one row per value")
    ap.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                    help="load client library (httpx: the earlier, heavier client, for comparison)")
    ap.add_argument("--server-src", help="run the server from this checkout's src (e.g. main's) for a same-run comparison")
    ap.add_argument("--server-args", default="", help="extra `mmrank serve` options, space-separated")
    ap.add_argument("--label", default="", help="a name for these rows (e.g. main / branch), shown in the table")
    ap.add_argument("--work", help="keep the trained run folders here and reuse them in later runs (default: a temp dir)")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--timeout-ms", type=float, default=50.0)
    ap.add_argument("--batch-queries", type=int, default=1000, help="queries of the batch rerank file (0: no batch rows)")
    ap.add_argument("--hostile-clients", type=int, default=1, help="clients that hang up mid-body and send bad requests meanwhile")
    ap.add_argument("--data-dir", default=os.environ.get("MMRANK_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    ap.add_argument("--load-note", default="", help="what else ran on the box (written with the results)")
    ap.add_argument("--out-json", help="also write every row as JSON")
    ap.add_argument("--notes", help="a markdown file appended to the section (the reading of the numbers)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/serving.md")
    ap.add_argument("--render", nargs="+", metavar="JSON",
                    help="measure nothing: write serving.md from --out-json files of earlier runs (kept short, one idle-box run each)")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.server_workers = [int(w) for w in args.server_workers.split(",")]
    seconds = min(args.seconds, 60.0)
    load_note = f", {args.load_note}" if args.load_note else ""
    rows: list[dict] = []
    if args.render:
        for path in args.render:
            rows += json.loads(Path(path).read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(args.work) if args.work else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            for model in args.models.split(","):
                for layout in args.layouts.split(","):
                    rows += measure(model, layout, args, seconds, work)
        for r in rows:
            r.update(command=command_line(), stamp=stamp(), seconds_per_row=seconds, warmup=args.warmup,
                     timeout_ms=args.timeout_ms, trees=args.trees, hostile_clients=args.hostile_clients)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(rows, indent=1, default=str))
    write_markdown(rows, load_note, args.no_write, args.notes)


def write_markdown(rows: list[dict], load_note: str, no_write: bool, notes_path: str | None = None) -> None:
    """Print (and unless ``no_write`` write to benchmarks/results/serving.md) the P2 section of ``rows``."""
    first = rows[0]
    runs = list(dict.fromkeys(f"`{r['command']}` — {r['stamp']}" for r in rows))
    seconds, warmup, timeout_ms = first["seconds_per_row"], first["warmup"], first["timeout_ms"]
    http_rows = [http_row(r) for r in rows if not r.get("batch")]
    batch_rows = [f"| {r['model']} | {r['layout']} | {r['top_m']} | {r['queries']} | {r['mb']:.0f} | {r['seconds']:.2f} | {r['qps']:.0f} |\n"
                  for r in rows if r.get("batch")]
    layouts = sorted({r["described"] for r in rows if not r.get("batch")})
    batch_md = ("""Batch (`mmrank rerank` path: `rerank_file` in-process, streaming, 64 queries per model call):

| model | layout | top-M | queries | JSONL MB | seconds | queries/s |
|---|---|---|---|---|---|---|
""" + "".join(batch_rows)) if batch_rows else ""
    notes = ("\n" + Path(notes_path).read_text()) if notes_path else ""
    md = f"""## Serving (P2): HTTP latency under load, where the time goes, batch rerank throughput

Commands (one quiet-box run each, the box's other jobs paused):
{chr(10).join("- " + r for r in runs)}

2-core CPU dev box{load_note} (the load clients run on the same 2 cores as the servers).

Models: LambdaMART ({first['trees']} trees, 31 leaves); CoTRR library default (d_model 256, 2 token layers, 8
heads, list context); CoTRR d64 (the shipped configs' size); CoTRR with random weights (cost does not
depend on them), scored by `CoTRR.score` (ONNX Runtime, the default `score_engine`). Requests: {'; '.join(layouts)}. Server: `mmrank serve
--workers N` (uvicorn, N processes sharing one port, --timeout-ms {timeout_ms:g}, OMP_NUM_THREADS=1; "server
code" names the checkout the server ran from when rows of two are compared in one run). Load: closed-loop
clients in one process on 127.0.0.1 for {seconds:g} s per row after a {warmup:g} s warm-up, one kept-alive
connection each, spread evenly over the workers (reconnecting until /health names a worker short of
its share, as a round-robin balancer would place them), pre-encoded request bodies; every 200 answer is
checked to be a permutation of its request after the timed window. Load client `aiohttp` (C HTTP
parser) unless the row says `httpx` (the earlier pure-Python client, answers parsed in the loop).
Meanwhile {first['hostile_clients']} hostile client(s): hang up mid-body, send broken JSON, send 1,001 candidates.
"Stage ms" is the mean per request from each answer's `Server-Timing` header (parse = JSON + schema;
features = the query's RankingSet; model = scoring, thread hand-off and timeout guard included;
serialise = the answer; outside = client latency minus those: HTTP, event-loop queueing, the client).
"Server CPU ms/request" is the server processes' user+system CPU over the run divided by the /rerank
requests they answered (hostile ones included); "client CPU ms/request" is the load client process's
CPU over the timed window divided by its measured requests. Goal: p95 <= 25 ms and zero 5xx.

| server code | model | layout | clients | server workers | load client | body KiB | requests | req/s | p50 ms | p95 ms | p99 ms | server CPU ms/request | client CPU ms/request | stage ms: parse / features / model / serialise / outside | non-200 | 5xx | permutation violations | answers | hostile clients | server 5xx | goal |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{''.join(http_rows)}
{batch_md}{notes}"""
    print(md)
    if not no_write:  # BENCHMARKS.md is re-assembled from the results by benchmarks/common.py's assemble()
        (RESULTS / "serving.md").write_text(md.rstrip() + "\n")
        print("wrote", RESULTS / "serving.md")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
