"""Prometheus metrics of one server, in their own registry (so several apps in one process —
tests, a reload — never collide in the global one)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mmrank.serve.reorder import Decision

# Latency buckets around the 25 ms p95 goal.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
_UNCERTAINTY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The server's counters and histograms (docs/serving.md, "GET /metrics")."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mmrank_requests", "HTTP requests by route and status code", ["route", "code"], registry=r)
        self.latency = Histogram(
            "mmrank_request_latency_seconds", "HTTP request latency by route", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queries = Counter("mmrank_rerank_queries", "reranked queries by outcome status", ["status"], registry=r)
        self.fallbacks = Counter("mmrank_fallbacks", "queries returned in the original order, by reason", ["reason"], registry=r)
        self.uncertainty = Histogram(
            "mmrank_uncertainty", "query-level MC-dropout uncertainty (mean score std)", buckets=_UNCERTAINTY_BUCKETS, registry=r
        )
        self.model_info = Gauge("mmrank_model_info", "the model being served (value 1)", ["model_id", "version"], registry=r)
        self.reloads = Counter("mmrank_reloads", "model reloads by result", ["result"], registry=r)
        # with --workers N each process has its own counters: this says which process answered the scrape
        self.worker_pid = Gauge("mmrank_worker_pid", "process id of the server process that answered this scrape", registry=r)
        self.worker_pid.set(os.getpid())
        self.stages = Histogram(
            "mmrank_request_stage_seconds", "where a /rerank request's time goes: parse, features, model, serialise (ab_log with --ab-log)",
            ["stage"], buckets=_LATENCY_BUCKETS, registry=r,
        )

    def record_decision(self, decision: Decision) -> None:
        """Count one query's outcome (``mmrank_rerank_queries`` by status), its fallback reason
        when the original order was returned, and observe its uncertainty when it has one."""
        self.queries.labels(decision.status).inc()
        if decision.status == "fallback":
            self.fallbacks.labels(decision.reason).inc()
        if decision.uncertainty is not None:
            self.uncertainty.observe(decision.uncertainty)

    def record_stages(self, seconds: dict[str, float]) -> None:
        """Observe one request's seconds per stage (``mmrank_request_stage_seconds``)."""
        for stage, value in seconds.items():
            self.stages.labels(stage).observe(value)

    def set_model(self, model_id: str, version: str) -> None:
        """Make ``mmrank_model_info`` name only this model: earlier label sets are cleared."""
        self.model_info.clear()
        self.model_info.labels(model_id, version).set(1)

    def render(self) -> bytes:
        """This registry in the Prometheus text exposition format (served with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
