"""`mmrank rerank` (batch, a JSONL file) and `mmrank serve` (the HTTP service)."""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from mmrank.cli.app import app, user_errors
from mmrank.errors import ConfigError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _policy(top_m: int | None, rollout: float, shadow: bool, timeout_ms: float | None,
            uncertainty_threshold: float | None, mc_passes: int):
    from mmrank.serve.policy import RerankPolicy

    if not 0.0 <= rollout <= 100.0:
        raise ConfigError(f"--rollout {rollout:g} is not a percentage — use a value in 0..100")
    if top_m is not None and top_m < 1:
        raise ConfigError(f"--top-m {top_m} must be at least 1 — or leave it out to rerank every candidate")
    if mc_passes < 1 and uncertainty_threshold is not None:
        raise ConfigError("--uncertainty-threshold needs --mc-passes of at least 1")
    return RerankPolicy(top_m=top_m, rollout_percent=rollout, shadow=shadow, timeout_ms=timeout_ms,
                        uncertainty_threshold=uncertainty_threshold, mc_passes=mc_passes)


def _warn_if_no_uncertainty(console: Console, loaded, policy) -> None:
    from mmrank.serve.scoring import supports_uncertainty

    if policy.uncertainty_threshold is not None and not supports_uncertainty(loaded.ranker):
        console.print(f"warning: {loaded.kind} has no MC-dropout uncertainty; --uncertainty-threshold is ignored",
                      style="yellow")


def _log_events_to_stderr() -> None:
    """Shadow orders and reloads are logged as JSON lines by ``mmrank.serve``; uvicorn configures
    only its own loggers, so without this they would be dropped."""
    import logging

    log = logging.getLogger("mmrank.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """While inside: SIGTERM raises SystemExit(143) like Ctrl-C raises KeyboardInterrupt, so the
    batch rerank removes its temp files and leaves the previous output in place (Python's default
    would die at once, leaving them behind). The previous handler is restored on the way out."""
    import signal
    import threading

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


TOP_M_HELP = ("Rerank only the first M candidates of each query; the rest keep their order after them "
              "(default: all, the same in `mmrank rerank` and `mmrank serve`).")


@app.command("rerank")
def rerank(
    model: Path = typer.Option(..., "--model", help="Run directory of a trained model."),
    in_path: Path = typer.Option(..., "--in", help="Scored JSONL (native schema or Step5 scored.jsonl), one query a line."),
    out_path: Path = typer.Option(..., "--out", help="Reranked JSONL to write (atomically)."),
    top_m: int | None = typer.Option(None, "--top-m", help=TOP_M_HELP),
    shadow: bool = typer.Option(False, "--shadow", help="Score and record the model's order, but keep the original order."),
    rollout: float = typer.Option(100.0, "--rollout", help="Percent of queries (stable sha256 bucket of query_id) the model reorders."),
    quarantine: Path | None = typer.Option(None, "--quarantine", help="Where bad lines go (default: <out>.quarantine.jsonl)."),
    uncertainty_threshold: float | None = typer.Option(None, "--uncertainty-threshold", help="Fall back when the MC-dropout uncertainty is above this."),
    mc_passes: int = typer.Option(10, "--mc-passes", help="MC-dropout passes when an uncertainty threshold is set."),
) -> None:
    """Rerank every query of a JSONL file with a trained model, streaming line by line.

    Each output line is the input query with its candidates reordered and annotated with score, rank and
    original_rank, plus status (reranked | fallback | shadow) and reason. Bad lines are quarantined
    with their path:line and reason; every good query is written.

    Exit codes: 0 every line done; 3 partial (some lines quarantined or some queries fell back on a
    model fault); 4 nothing reranked (lines came in, the model ordered none); 2 bad arguments or
    paths (nothing written).

    Example: mmrank rerank --model runs/demo/lambdamart --in scored.jsonl --out reranked.jsonl --top-m 20
    """
    with user_errors():
        summary = _rerank(model, in_path, out_path, quarantine,
                          _policy(top_m, rollout, shadow, None, uncertainty_threshold, mc_passes))
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _rerank(model: Path, in_path: Path, out_path: Path, quarantine: Path | None, policy):
    from mmrank.serve.batch import rerank_file
    from mmrank.serve.batch_output import check_output_path
    from mmrank.serve.model_slot import load_run

    console = Console(stderr=True, soft_wrap=True)  # paths and counts stay on one greppable line
    check_output_path(out_path, "--out")  # before loading the model: fail in a blink
    loaded = load_run(model)
    _warn_if_no_uncertainty(console, loaded, policy)
    size = in_path.stat().st_size if in_path.is_file() else None
    with _stop_on_sigterm(), Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"reranking {in_path.name}", total=size)
        summary = rerank_file(loaded.ranker, in_path, out_path, policy, quarantine_path=quarantine,
                              progress=lambda n: bar.advance(task, n))
    console.print(f"model {loaded.model_id} (version {loaded.version})")
    console.print(f"{summary.lines_in} queries in, {summary.queries_written} written to {out_path}, "
                  f"{summary.quarantined} quarantined")
    console.print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.status.items())))
    console.print("reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.reasons.items())))
    if summary.quarantined:
        console.print(f"bad lines are in {summary.quarantine_path}", style="yellow")
    console.print(summary.outcome(), style="bold" if summary.exit_code == 0 else "bold yellow")
    return summary


@app.command("serve")
def serve(
    model: Path = typer.Option(..., "--model", help="Run directory of a trained model."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8080, "--port", help="TCP port, 1..65535."),
    rollout: float = typer.Option(100.0, "--rollout", help="Percent of queries (stable sha256 bucket of query_id) the model reorders."),
    shadow: bool = typer.Option(False, "--shadow", help="Score and log the model's order, but return the original order."),
    timeout_ms: float = typer.Option(50.0, "--timeout-ms", help="Fall back to the original order when the model takes longer."),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding a bearer token: required on /rerank, enables /admin/reload."),
    max_candidates: int = typer.Option(1000, "--max-candidates", help="Requests with more candidates get 413."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", help="Requests with a larger body get 413."),
    top_m: int | None = typer.Option(None, "--top-m", help=TOP_M_HELP),
    uncertainty_threshold: float | None = typer.Option(None, "--uncertainty-threshold", help="Fall back when the MC-dropout uncertainty is above this."),
    mc_passes: int = typer.Option(10, "--mc-passes", help="MC-dropout passes when an uncertainty threshold is set."),
    models_root: Path | None = typer.Option(None, "--models-root", help="/admin/reload loads only run folders under this (default: the parent of --model)."),
    read_timeout_s: float = typer.Option(10.0, "--read-timeout-s", help="A client must send a whole request (headers and body) within this; slower ones get 408 and are dropped."),
    docs: bool = typer.Option(False, "--docs", help="Serve the interactive docs at /docs (they load Swagger UI from a CDN; off by default, /openapi.json is always there)."),
    ab_log: Path | None = typer.Option(None, "--ab-log", help="Append A/B events here (assignment per answer; POST /ab/outcome records outcomes) for `mmrank ab analyze`."),
    scoring_threads: int = typer.Option(4, "--scoring-threads", help="Model calls run side by side in each server process, each torch call single-threaded (1 is faster for small models such as LambdaMART; docs/serving.md)."),
    http: str = typer.Option("auto", "--http", help="HTTP parser: httptools (C), h11 (pure Python), or auto (httptools when installed)."),
    workers: int = typer.Option(1, "--workers", help="Server processes sharing the port (uvicorn's multi-process mode), each with its own copy of the model; about one per core. With more than one, /admin/reload is refused (restart instead) and /metrics counts per process."),
) -> None:
    """Serve a trained model over HTTP: POST /rerank, GET /health, GET /metrics, POST /admin/reload.

    Every /rerank answer is a permutation of the request's candidates; on a model error, timeout,
    non-finite scores or high uncertainty it is the original order with status fallback and the reason.
    The OpenAPI schema is at /openapi.json.

    Example: mmrank serve --model runs/demo/lambdamart --port 8080 --rollout 10 --token-file token.txt

    Example with two server processes on one port (about one per core; see docs/serving.md,
    "Several workers"): mmrank serve --model runs/demo/cotrr --port 8080 --workers 2
    """
    with user_errors():
        _check_serve_numbers(port, timeout_ms, max_candidates, max_body_mb, read_timeout_s)
        if workers < 1:
            raise ConfigError(f"--workers {workers} must be at least 1")
        if scoring_threads < 1:
            raise ConfigError(f"--scoring-threads {scoring_threads} must be at least 1")
        if http not in ("auto", "httptools", "h11"):
            raise ConfigError(f"--http {http!r}: use auto, httptools or h11")
        if http == "httptools" and importlib.util.find_spec("httptools") is None:
            raise ConfigError("--http httptools: httptools is not installed — pip install httptools, or use --http h11")
        token = _read_token(token_file)
        policy = _policy(top_m, rollout, shadow, timeout_ms, uncertainty_threshold, mc_passes)
        _serve(model, host, port, policy, token, max_candidates, max_body_mb, models_root, read_timeout_s, docs, ab_log,
               workers=workers, token_file=token_file, http=http, scoring_threads=scoring_threads)


def _check_serve_numbers(port: int, timeout_ms: float, max_candidates: int, max_body_mb: float, read_timeout_s: float) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port — use 1..65535")
    for option, value in (("--timeout-ms", timeout_ms), ("--max-candidates", max_candidates),
                          ("--max-body-mb", max_body_mb), ("--read-timeout-s", read_timeout_s)):
        if value <= 0:
            raise ConfigError(f"{option} must be positive, got {value:g} — give a number above 0")


def _read_token(token_file: Path | None) -> str | None:
    if token_file is None:
        return None
    try:
        token = token_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{token_file}: cannot read the token file ({getattr(e, 'strerror', None) or e}) — check the path") from None
    if not token:
        raise ConfigError(f"{token_file}: the token file is empty — put the token on its first line")
    return token


def _serve(model: Path, host: str, port: int, policy, token: str | None, max_candidates: int, max_body_mb: float,
           models_root: Path | None, read_timeout_s: float, docs: bool, ab_log: Path | None = None,
           workers: int = 1, token_file: Path | None = None, http: str = "auto", scoring_threads: int = 4) -> None:
    import uvicorn

    from mmrank.serve.app import ServeConfig, create_app
    from mmrank.serve.model_slot import ModelSlot, load_run
    from mmrank.serve.slow_clients import read_timeout_protocol

    console = Console(stderr=True, soft_wrap=True)  # paths and counts stay on one greppable line
    # With workers, the parent only supervises: the run is checked in a short-lived process, so the
    # parent does not keep torch and a model in memory (~0.7 GB for CoTRR) beside the workers' copies.
    loaded = load_run(model) if workers == 1 else _check_run_elsewhere(model)
    root = (models_root or loaded.run_dir.parent).resolve()
    if not root.is_dir():
        raise ConfigError(f"--models-root {models_root}: not a folder — give the folder that holds the run folders")
    config = ServeConfig(policy=policy, max_candidates=max_candidates, max_body_bytes=int(max_body_mb * 1024 * 1024),
                         token=token, models_root=root, read_timeout_s=read_timeout_s, docs=docs, ab_log=ab_log,
                         scoring_threads=scoring_threads, workers=workers)
    _warn_if_no_uncertainty(console, loaded, policy)
    if host not in _LOOPBACK:
        console.print(f"warning: binding {host}, reachable from other machines" + ("" if token else " without a token"), style="yellow")
    console.print(f"serving {loaded.model_id} (version {loaded.version}) on http://{host}:{port}"
                  + (f" with {workers} worker processes" if workers > 1 else ""))
    _log_events_to_stderr()
    if workers > 1:
        _serve_workers(model, host, port, config, token_file, workers, http)
        return
    server = uvicorn.Server(uvicorn.Config(create_app(ModelSlot(loaded), config), host=host, port=port, log_level="info",
                                           access_log=False, http=read_timeout_protocol(read_timeout_s, http)))
    try:
        server.run()
    except SystemExit:  # uvicorn exits 3 when it cannot bind; it has logged why on the line above
        if server.started:
            raise
        raise ConfigError(f"cannot listen on {host}:{port} (see the log line above) — pick another --port or --host") from None


def _check_run_elsewhere(model: Path):
    """What ``load_run(model)`` says about a run — model id, version, folder and whether it has
    MC-dropout uncertainty — from a spawned process that loads it and exits; its error (exit 2)
    when the run cannot be loaded."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run_summary, model).result()


def _run_summary(model: Path):
    """``load_run(model)`` reduced to what ``mmrank serve`` prints and checks (picklable): the
    ranker is replaced by a stand-in that has ``score_with_uncertainty`` exactly when it does."""
    from types import SimpleNamespace

    from mmrank.serve.model_slot import load_run
    from mmrank.serve.scoring import supports_uncertainty

    loaded = load_run(model)
    ranker = SimpleNamespace(score_with_uncertainty=print) if supports_uncertainty(loaded.ranker) else SimpleNamespace()
    return SimpleNamespace(model_id=loaded.model_id, version=loaded.version, run_dir=loaded.run_dir, kind=loaded.kind,
                           ranker=ranker)


def _serve_workers(model: Path, host: str, port: int, config, token_file: Path | None, workers: int, http: str) -> None:
    """uvicorn's multi-process mode: it binds the port, spawns ``workers`` processes that each build
    the app from ``MMRANK_SERVE_WORKER`` (mmrank.serve.workers) and accept on the shared socket, and
    restarts one that dies."""
    import os

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mmrank.serve.workers import ENV, worker_settings

    os.environ[ENV] = worker_settings(
        model, config.policy, token_file=token_file, max_candidates=config.max_candidates,
        max_body_bytes=config.max_body_bytes, models_root=config.models_root, read_timeout_s=config.read_timeout_s,
        docs=config.docs, ab_log=config.ab_log, workers=workers, http=http, scoring_threads=config.scoring_threads)
    uv = uvicorn.Config("mmrank.serve.workers:app_from_env", factory=True, workers=workers, host=host, port=port,
                        log_level="info", access_log=False, http="mmrank.serve.workers:http_protocol")
    try:
        sock = uv.bind_socket()
    except SystemExit:  # uvicorn exits when it cannot bind; it has logged why
        raise ConfigError(f"cannot listen on {host}:{port} (see the log line above) — pick another --port or --host") from None
    try:
        Multiprocess(uv, sockets=[sock]).run()
    finally:
        sock.close()
