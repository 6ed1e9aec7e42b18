"""The HTTP reranking service: ``create_app(slot, config)`` → a FastAPI app.

Routes: ``POST /rerank`` (one query → its candidates reordered, always a permutation of the
request's), ``GET /health``, ``GET /metrics`` (Prometheus), ``POST /admin/reload`` (swap the run
directory; needs the token). ``/health`` and ``/metrics`` stay open for probes and scrapers;
with a token configured ``/rerank`` needs ``Authorization: Bearer <token>`` too.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
import pydantic_core
from pydantic import ValidationError

import mmrank
from mmrank.data.formats import BadRecord
from mmrank.serve.policy import RerankPolicy, decide_one
from mmrank.serve.prometheus import CONTENT_TYPE, ServeMetrics
from mmrank.serve.middleware import BodyLimitMiddleware, MetricsMiddleware
from mmrank.serve.model_slot import ModelSlot
from mmrank.serve.records import parse_line, ranking_set_of
from mmrank.serve.reorder import MODEL_ERROR, SHADOW, is_permutation, original_order, ranked_entries
from mmrank.serve.schemas import ErrorResponse, FieldError, HealthResponse, ReloadRequest, RerankRequest, RerankResponse

log = logging.getLogger("mmrank.serve")
ROUTES = {"/rerank", "/health", "/metrics", "/admin/reload"}


@dataclass(frozen=True)
class ServeConfig:
    policy: RerankPolicy = RerankPolicy(timeout_ms=50.0)
    max_candidates: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    token: str | None = None
    scoring_threads: int = 4


def _error(status: int, detail: str, errors: list[FieldError] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(detail=detail, errors=errors or []).model_dump(), status_code=status)


def _invalid(errors: list[dict]) -> JSONResponse:
    """422 naming each field that failed validation (``candidates.0.candidate_id: Field required``)."""
    fields = [
        FieldError(field=".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body", message=str(err.get("msg", "invalid")))
        for err in errors
    ]
    return _error(422, "; ".join(f"{e.field}: {e.message}" for e in fields[:5]), fields)


def _request_schemas() -> tuple[dict, dict]:
    schema = RerankRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = {**schema.pop("$defs", {}), "RerankRequest": schema}
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RerankRequest"}}}}}
    return schemas, body


_REQUEST_SCHEMAS, _REQUEST_BODY = _request_schemas()


def create_app(slot: ModelSlot, config: ServeConfig = ServeConfig()) -> FastAPI:
    metrics = ServeMetrics()
    metrics.set_model(slot.current.model_id, slot.current.version)
    started = time.time()
    # The pools live as long as the app (not its lifespan: test clients run the lifespan per
    # connection, and idle worker threads cost nothing).
    scoring_pool = ThreadPoolExecutor(config.scoring_threads, thread_name_prefix="mmrank-score")
    reload_pool = ThreadPoolExecutor(1, thread_name_prefix="mmrank-reload")

    app = FastAPI(
        title="mmrank reranker",
        version=mmrank.__version__,
        description="Reranks one query's candidates; every answer is a permutation of the request's candidates.",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)  # outermost: counts 413s too

    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def check_token(request: Request) -> None:
        given = bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token — send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def rerank_auth(request: Request) -> None:
        if config.token is not None:
            check_token(request)

    def admin_auth(request: Request) -> None:
        if config.token is None:
            raise HTTPException(403, "reload is disabled — start the server with --token-file to enable it")
        check_token(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return _invalid(exc.errors())

    err = {"model": ErrorResponse}
    responses = {401: err, 413: err, 422: err}

    @app.post("/rerank", response_model=RerankResponse, responses=responses, dependencies=[Depends(rerank_auth)],
              openapi_extra=_REQUEST_BODY)
    async def rerank(request: Request):
        # The body is parsed here, not by FastAPI: pydantic-core's parser is 3-4x faster than
        # json.loads on float-heavy queries, and the raw dict goes straight to io_jsonl.
        try:
            obj = parse_line(await request.body())
            req = RerankRequest.model_validate(obj)
        except BadRecord as bad:
            return _error(422, f"{bad.message} — {bad.hint}", [FieldError(field="body", message=bad.message)])
        except ValidationError as e:
            return _invalid(e.errors())
        n = len(req.candidates)
        if n > config.max_candidates:
            return _error(413, f"{n} candidates, more than the limit {config.max_candidates} — send the top {config.max_candidates}")
        try:
            query = ranking_set_of(obj)
        except BadRecord as bad:
            return _error(422, f"{bad.message} — {bad.hint}", [FieldError(field="body", message=bad.message)])
        loaded = slot.current  # read once: a reload mid-request does not change this request's model
        decision = await decide_one(loaded.ranker, query, config.policy, scoring_pool)
        if not is_permutation(decision.order, n):  # cannot happen by reorder's contract; never lose a candidate
            decision = original_order(n, MODEL_ERROR, "internal: order was not a permutation")
        metrics.record_decision(decision)
        if decision.status == SHADOW:
            order = [str(req.candidates[i].candidate_id) for i in decision.model_order]
            log.info(json.dumps({"event": "shadow", "query_id": str(req.query_id), "model_order": order}))
        # Serialised directly (shaped as RerankResponse, which documents it): FastAPI would
        # otherwise validate the whole answer once more, a pydantic pass per request for nothing.
        answer = {
            "query_id": req.query_id,
            "status": decision.status,
            "reason": decision.reason,
            "detail": decision.detail,
            "uncertainty": decision.uncertainty,
            "model_id": loaded.model_id,
            "model_version": loaded.version,
            "candidates": [
                {"candidate_id": req.candidates[pos].candidate_id, "score": score, "rank": rank, "original_rank": orig}
                for pos, score, rank, orig in ranked_entries(decision)
            ],
        }
        return Response(pydantic_core.to_json(answer), media_type="application/json")

    # The request body is documented by hand (it is parsed in the handler): register its schemas.
    default_openapi = app.openapi

    def openapi_with_request_schemas():
        if app.openapi_schema is None:
            default_openapi().setdefault("components", {}).setdefault("schemas", {}).update(_REQUEST_SCHEMAS)
        return app.openapi_schema

    app.openapi = openapi_with_request_schemas

    def health_body() -> HealthResponse:
        cur = slot.current
        now = time.time()
        return HealthResponse(
            status="ok", model_id=cur.model_id, model_kind=cur.kind, model_version=cur.version,
            run_dir=str(cur.run_dir), uptime_s=now - started, model_loaded_s_ago=now - cur.loaded_at,
            mmrank_version=mmrank.__version__,
        )

    @app.get("/health", response_model=HealthResponse)
    async def health():
        return health_body()

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}}})
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/admin/reload", response_model=HealthResponse, responses={400: err, 401: err, 403: err, 404: err, 422: err},
              dependencies=[Depends(admin_auth)])
    async def reload(body: ReloadRequest):
        if not Path(body.run_dir).is_dir():
            metrics.reloads.labels("failed").inc()
            return _error(404, f"run directory {body.run_dir} not found — pass a folder `mmrank train` wrote")
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(reload_pool, slot.reload, body.run_dir)
        except Exception as e:  # noqa: BLE001 — a bad run (any loader error) must not stop serving
            metrics.reloads.labels("failed").inc()
            return _error(422, f"cannot load {body.run_dir}: {e} — the previous model is still serving")
        metrics.reloads.labels("ok").inc()
        metrics.set_model(loaded.model_id, loaded.version)
        log.info(json.dumps({"event": "reload", "model_id": loaded.model_id, "version": loaded.version}))
        return health_body()

    return app
