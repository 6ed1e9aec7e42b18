"""`mmrank rerank` (batch, a JSONL file) and `mmrank serve` (the HTTP service)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from mmrank.cli.app import app
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


@app.command("rerank")
def rerank(
    model: Path = typer.Option(..., "--model", help="Run directory of a trained model."),
    in_path: Path = typer.Option(..., "--in", help="Scored JSONL (native schema or Step5 scored.jsonl), one query a line."),
    out_path: Path = typer.Option(..., "--out", help="Reranked JSONL to write (atomically)."),
    top_m: int = typer.Option(20, "--top-m", help="Rerank the first M candidates of each query; the rest keep their order."),
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

    Example: mmrank rerank --model runs/demo/lambdamart --in scored.jsonl --out reranked.jsonl --top-m 20
    """
    from mmrank.serve.batch import rerank_file
    from mmrank.serve.model_slot import load_run

    policy = _policy(top_m, rollout, shadow, None, uncertainty_threshold, mc_passes)
    console = Console(stderr=True, soft_wrap=True)  # paths and counts stay on one greppable line
    loaded = load_run(model)
    _warn_if_no_uncertainty(console, loaded, policy)
    size = in_path.stat().st_size if in_path.is_file() else None
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
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


@app.command("serve")
def serve(
    model: Path = typer.Option(..., "--model", help="Run directory of a trained model."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8080, "--port"),
    rollout: float = typer.Option(100.0, "--rollout", help="Percent of queries (stable sha256 bucket of query_id) the model reorders."),
    shadow: bool = typer.Option(False, "--shadow", help="Score and log the model's order, but return the original order."),
    timeout_ms: float = typer.Option(50.0, "--timeout-ms", help="Fall back to the original order when the model takes longer."),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding a bearer token: required on /rerank, enables /admin/reload."),
    max_candidates: int = typer.Option(1000, "--max-candidates", help="Requests with more candidates get 413."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", help="Requests with a larger body get 413."),
    top_m: int | None = typer.Option(None, "--top-m", help="Rerank only the first M candidates (default: all)."),
    uncertainty_threshold: float | None = typer.Option(None, "--uncertainty-threshold", help="Fall back when the MC-dropout uncertainty is above this."),
    mc_passes: int = typer.Option(10, "--mc-passes", help="MC-dropout passes when an uncertainty threshold is set."),
) -> None:
    """Serve a trained model over HTTP: POST /rerank, GET /health, GET /metrics, POST /admin/reload.

    Every /rerank answer is a permutation of the request's candidates; on a model error, timeout,
    non-finite scores or high uncertainty it is the original order with status fallback and the reason.
    The OpenAPI schema is at /openapi.json.

    Example: mmrank serve --model runs/demo/lambdamart --port 8080 --rollout 10 --token-file token.txt
    """
    import uvicorn

    from mmrank.serve.app import ServeConfig, create_app
    from mmrank.serve.model_slot import ModelSlot, load_run

    if timeout_ms <= 0 or max_candidates < 1 or max_body_mb <= 0:
        raise ConfigError("--timeout-ms, --max-candidates and --max-body-mb must be positive")
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{token_file}: cannot read the token file ({e.strerror}) — check the path") from None
        if not token:
            raise ConfigError(f"{token_file}: the token file is empty — put the token on its first line")
    policy = _policy(top_m, rollout, shadow, timeout_ms, uncertainty_threshold, mc_passes)
    config = ServeConfig(policy=policy, max_candidates=max_candidates, max_body_bytes=int(max_body_mb * 1024 * 1024), token=token)
    console = Console(stderr=True, soft_wrap=True)  # paths and counts stay on one greppable line
    loaded = load_run(model)
    _warn_if_no_uncertainty(console, loaded, policy)
    if host not in _LOOPBACK:
        console.print(f"warning: binding {host}, reachable from other machines" + ("" if token else " without a token"), style="yellow")
    console.print(f"serving {loaded.model_id} (version {loaded.version}) on http://{host}:{port}")
    _log_events_to_stderr()
    uvicorn.run(create_app(ModelSlot(loaded), config), host=host, port=port, log_level="info", access_log=False)
