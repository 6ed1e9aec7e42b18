"""The HTTP reranking service: ``create_app(slot, config)`` → a FastAPI app.

Routes: ``POST /rerank`` (one query → its candidates reordered, always a permutation of the
request's), ``GET /health``, ``GET /metrics`` (Prometheus), ``POST /admin/reload`` (swap in
another run folder under the models root; needs the token). ``/health`` and ``/metrics`` stay
open for probes and scrapers and name no server path; with a token configured ``/rerank`` needs
``Authorization: Bearer <token>`` too.

The event loop only routes: a body past ``offload_bytes`` is parsed in a worker thread, models
score in the scoring pool, a reload loads in its own thread — so ``/health`` and the other
clients keep being answered while one request is heavy.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
import pydantic_core

import mmrank
from mmrank.serve.ab_log import ABLogger, add_outcome_route
from mmrank.serve.model_slot import LoadedModel, ModelSlot
from mmrank.serve.policy import RerankPolicy, decide_one
from mmrank.serve.prometheus import CONTENT_TYPE, ServeMetrics
from mmrank.serve.middleware import BodyLimitMiddleware, MetricsMiddleware
from mmrank.serve.reload_check import IncompatibleModel, TrafficLayouts, compatibility_problems, resolve_under, without_paths
from mmrank.serve.layout import layout_of
from mmrank.serve.reorder import MODEL_ERROR, SHADOW, UNCERTAINTY, FALLBACK, answer_candidates, is_permutation, original_order
from mmrank.serve.request_parse import ParsedQuery, error_response, invalid_response, parse_request, quick_candidate_count
from mmrank.serve.schemas import ErrorResponse, HealthResponse, ReloadRequest, RerankResponse, rerank_request

log = logging.getLogger("mmrank.serve")
ROUTES = {"/rerank", "/health", "/metrics", "/admin/reload", "/ab/outcome"}  # /metrics labels; others → "other"


@dataclass(frozen=True)
class ServeConfig:
    """Server settings. ``models_root`` None → the parent of the first served run;
    ``read_timeout_s`` bounds how long a request body may take to arrive (the header deadline is
    the uvicorn protocol's, see ``slow_clients``); ``docs`` serves Swagger UI at /docs (from a CDN)."""

    policy: RerankPolicy = RerankPolicy(timeout_ms=50.0)
    max_candidates: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    token: str | None = None
    # Model calls side by side in one process. Measured on 2 cores (docs/serving.md, Performance):
    # 1 thread ran the small models (LambdaMART, CoTRR d64) faster in one process, but left a core
    # idle for CoTRR at the library default size (10 ms of GIL-free arithmetic a query), where
    # most answers then timed out; 4 keeps the heavy model's answers in time.
    scoring_threads: int = 4
    models_root: Path | None = None
    read_timeout_s: float | None = 10.0
    docs: bool = False
    # Bodies larger than this are parsed off the event loop. A thread hop costs more than it saves
    # below that: parsing holds the GIL either way (~1.2 ms for a 105 KiB body of 100 candidates
    # x 128 floats, ~5 ms at 420 KiB), and a hop adds a GIL hand-off to the latency.
    offload_bytes: int = 512 * 1024
    ab_log: Path | None = None  # A/B events for `mmrank ab analyze` (mmrank.serve.ab_log)
    workers: int = 1  # server processes on this port (mmrank.serve.workers); reload needs exactly one


class SingleTorchThreadPool(ThreadPoolExecutor):
    """The scoring pool: each model call runs torch with one intra-op thread. Concurrency comes
    from requests scored side by side; intra-op threads on top would put (scoring threads x cores)
    OpenMP threads on the cores, spinning at barriers. Checked per call, since a reload can bring
    in the first torch model after the pool's threads started."""

    def submit(self, fn, /, *args, **kwargs):
        """Schedule ``fn(*args, **kwargs)`` on a pool thread running torch single-threaded."""
        return super().submit(_one_torch_thread, fn, *args, **kwargs)


def _one_torch_thread(fn, *args, **kwargs):
    torch = sys.modules.get("torch")  # a LambdaMART server never imports torch: nothing to set
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return fn(*args, **kwargs)


@dataclass
class ServerState:
    """What the routes share: the slot, settings, metrics, worker pools, reload bookkeeping."""

    slot: ModelSlot
    config: ServeConfig
    models_root: Path
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    started: float = field(default_factory=time.time)
    traffic: TrafficLayouts = field(default_factory=TrafficLayouts)
    reload_problems: list[str] = field(default_factory=list)
    forced_reload: bool = False
    ab: ABLogger | None = None
    # The pools live as long as the app (not its lifespan: test clients run the lifespan per
    # connection, and idle worker threads cost nothing).
    scoring_pool: ThreadPoolExecutor = field(init=False)
    parse_pool: ThreadPoolExecutor = field(init=False)
    reload_pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.scoring_pool = SingleTorchThreadPool(self.config.scoring_threads, thread_name_prefix="mmrank-score")
        self.parse_pool = ThreadPoolExecutor(2, thread_name_prefix="mmrank-parse")
        self.reload_pool = ThreadPoolExecutor(1, thread_name_prefix="mmrank-reload")
        self.metrics.set_model(self.slot.current.model_id, self.slot.current.version)

    def health(self) -> HealthResponse:
        """The ``GET /health`` answer: the served model's id, kind and version, uptime, seconds
        since the model was loaded, and whether it was force-reloaded (with what the check found)."""
        cur, now = self.slot.current, time.time()
        return HealthResponse(
            status="ok", model_id=cur.model_id, model_kind=cur.kind, model_version=cur.version,
            uptime_s=now - self.started, model_loaded_s_ago=now - cur.loaded_at, mmrank_version=mmrank.__version__,
            forced_reload=self.forced_reload, reload_problems=self.reload_problems, pid=os.getpid(),
        )


def create_app(slot: ModelSlot, config: ServeConfig = ServeConfig()) -> FastAPI:
    """The service for the model in ``slot`` (see the module docstring for the routes)."""
    root = (config.models_root or slot.current.run_dir.parent).resolve()
    state = ServerState(slot=slot, config=config, models_root=root)
    app = FastAPI(
        title="mmrank reranker",
        version=mmrank.__version__,
        description="Reranks one query's candidates; every answer is a permutation of the request's candidates.",
        docs_url="/docs" if config.docs else None,  # Swagger UI loads from a CDN: opt-in only
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes, read_timeout_s=config.read_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=ROUTES)  # outermost: counts 413s too

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return invalid_response(exc.errors())

    rerank_auth, admin_auth = _auth_dependencies(config.token)
    if config.ab_log is not None:
        state.ab = ABLogger(config.ab_log)
        add_outcome_route(app, state.ab, _depends(rerank_auth))
    _add_rerank_route(app, state, rerank_auth)
    _add_probe_routes(app, state)
    _add_reload_route(app, state, admin_auth)
    _document_request_body(app)
    return app


def _auth_dependencies(token: str | None):
    """FastAPI dependencies: (for /rerank: the token when one is configured, else None — no
    dependency at all; for reload: always). Coroutines, not plain functions: FastAPI runs a plain
    ``def`` dependency in its thread pool, a thread hop per request for a string comparison."""

    async def check_token(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token — send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    async def admin_auth(request: Request) -> None:
        if token is None:
            raise HTTPException(403, "reload is disabled — start the server with --token-file to enable it")
        await check_token(request)

    return (check_token if token is not None else None), admin_auth


_ERR = {"model": ErrorResponse}


def _depends(auth) -> list:
    """The route's dependencies: the token check, or none when no token is configured."""
    return [] if auth is None else [Depends(auth)]


def _add_rerank_route(app: FastAPI, state: ServerState, auth) -> None:
    config = state.config

    @app.post("/rerank", response_model=RerankResponse, responses={401: _ERR, 408: _ERR, 413: _ERR, 422: _ERR},
              dependencies=_depends(auth), openapi_extra=_REQUEST_BODY)
    async def rerank(request: Request):
        started = time.perf_counter()
        # The body is parsed here, not by FastAPI: pydantic-core parses and validates it in one
        # pass (request_parse), and the plain dict goes straight to io_jsonl.
        body = await request.body()
        ids = quick_candidate_count(body)
        if ids > config.max_candidates:  # 5 ms for 8 MB: refuse before parsing a byte
            return error_response(413, f"{ids} candidate ids, more than the limit {config.max_candidates} "
                                       f"— send the top {config.max_candidates}")
        timings: dict[str, float] = {}
        if len(body) > config.offload_bytes:
            parsed = await asyncio.get_running_loop().run_in_executor(state.parse_pool, parse_request, body,
                                                                      config.max_candidates, timings)
        else:
            parsed = parse_request(body, config.max_candidates, timings)
        if not isinstance(parsed, ParsedQuery):
            return parsed
        loaded = state.slot.current  # read once: a reload mid-request does not change this request's model
        t0 = time.perf_counter()
        decision = await decide_one(loaded.ranker, parsed.query, config.policy, state.scoring_pool)
        t1 = time.perf_counter()
        response = _answer(state, loaded, parsed, decision)
        timings["model"], timings["serialise"] = t1 - t0, time.perf_counter() - t1
        if state.ab is not None:
            t2 = time.perf_counter()
            state.ab.assignment(parsed.obj, decision, loaded, config.policy.rollout_percent, started)
            timings["ab_log"] = time.perf_counter() - t2
        state.metrics.record_stages(timings)
        # Server-Timing (W3C): a client or a browser's dev tools see the split of every answer
        response.headers["server-timing"] = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in timings.items())
        return response


def _answer(state: ServerState, loaded: LoadedModel, parsed: ParsedQuery, decision) -> Response:
    """The response of one decided query; ids are the request's own JSON values (1.0 stays 1.0)."""
    n = parsed.query.n_candidates
    if not is_permutation(decision.order, n):  # cannot happen by reorder's contract; never lose a candidate
        decision = original_order(n, MODEL_ERROR, "internal: order was not a permutation")
    state.metrics.record_decision(decision)
    if decision.status != FALLBACK or decision.reason == UNCERTAINTY:  # the model scored it
        state.traffic.add(layout_of(parsed.query))
    cands = parsed.obj["candidates"]
    if decision.status == SHADOW:
        order = [cands[i]["candidate_id"] for i in decision.model_order]
        log.info(json.dumps({"event": "shadow", "query_id": parsed.obj["query_id"], "model_order": order}))
    # Serialised directly (shaped as RerankResponse, which documents it): FastAPI would
    # otherwise validate the whole answer once more, a pydantic pass per request for nothing.
    answer = {
        "query_id": parsed.obj["query_id"],
        "status": decision.status,
        "reason": decision.reason,
        "detail": without_paths(decision.detail, state.models_root) if decision.detail else "",  # open without a token
        "uncertainty": decision.uncertainty,
        "model_id": loaded.model_id,
        "model_version": loaded.version,
        "candidates": answer_candidates(cands, decision),
    }
    return Response(pydantic_core.to_json(answer), media_type="application/json")


def _add_probe_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", response_model=HealthResponse)
    async def health():
        return state.health()

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}}})
    async def prometheus_metrics():
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def _add_reload_route(app: FastAPI, state: ServerState, auth) -> None:
    @app.post("/admin/reload", response_model=HealthResponse, responses={400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR, 409: _ERR, 422: _ERR},
              dependencies=[Depends(auth)])
    async def reload(body: ReloadRequest):
        root = state.models_root
        if state.config.workers > 1:  # this request reaches one worker: the others would keep the old model
            state.metrics.reloads.labels("failed").inc()
            return error_response(409, f"reload is not available with --workers {state.config.workers}: it would swap the "
                                       "model in one worker process only — restart the server with the new --model")
        run_dir = resolve_under(root, body.run_dir)
        if run_dir is None:  # outside the root or missing: the same answer, so nothing leaks
            state.metrics.reloads.labels("failed").inc()
            return error_response(404, f"no run folder {body.run_dir!r} under the models root — pass the name of a "
                                       "folder `mmrank train` wrote there (relative to --models-root)")
        problems: list[str] = []

        def check(new: LoadedModel) -> None:
            problems.extend(compatibility_problems(state.slot.current.ranker, new.ranker, state.traffic.snapshot()))
            if problems and not body.force:
                raise IncompatibleModel(problems)

        try:
            loaded = await asyncio.get_running_loop().run_in_executor(state.reload_pool, state.slot.reload, run_dir, check)
        except IncompatibleModel as e:
            state.metrics.reloads.labels("refused").inc()
            return error_response(422, without_paths(f"refused {body.run_dir!r}: {e} — the previous model is still serving; "
                                                     'send "force": true to swap anyway', root))
        except Exception as e:  # noqa: BLE001 — a bad run (any loader error) must not stop serving
            state.metrics.reloads.labels("failed").inc()
            return error_response(422, without_paths(f"cannot load {body.run_dir!r}: {e} — the previous model is still serving", root))
        _after_reload(state, loaded, [without_paths(p, root) for p in problems])
        return state.health()


def _after_reload(state: ServerState, loaded: LoadedModel, problems: list[str]) -> None:
    """Book-keeping of a swap: metrics, the forced flag for /health, the log line."""
    state.forced_reload, state.reload_problems = bool(problems), problems
    if problems:  # forced: traffic is expected to change with the new model
        state.traffic.clear()
    state.metrics.reloads.labels("forced" if problems else "ok").inc()
    state.metrics.set_model(loaded.model_id, loaded.version)
    log.info(json.dumps({"event": "reload", "model_id": loaded.model_id, "version": loaded.version,
                         "forced": bool(problems), "problems": problems}))


def _request_schemas() -> tuple[dict, dict]:
    schema = rerank_request().json_schema(ref_template="#/components/schemas/{model}")
    schemas = {**schema.pop("$defs", {}), "RerankRequest": schema}
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RerankRequest"}}}}}
    return schemas, body


_REQUEST_SCHEMAS, _REQUEST_BODY = _request_schemas()


def _document_request_body(app: FastAPI) -> None:
    """The /rerank body is parsed by hand (not by FastAPI): register its schemas in the OpenAPI."""
    default_openapi = app.openapi

    def openapi_with_request_schemas():
        if app.openapi_schema is None:
            default_openapi().setdefault("components", {}).setdefault("schemas", {}).update(_REQUEST_SCHEMAS)
        return app.openapi_schema

    app.openapi = openapi_with_request_schemas
