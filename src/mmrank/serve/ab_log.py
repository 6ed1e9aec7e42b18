"""The server's A/B log (``mmrank serve --ab-log FILE``): one assignment event per answered
/rerank, and ``POST /ab/outcome`` for the outcomes clients report later. The schema is
``mmrank.ab.events``; ``mmrank ab analyze`` reads the file.

Writes happen on the event loop's thread, one short line each (flushed, so a crash loses at most
the line being written); a lock keeps lines whole should another thread ever write.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from mmrank.ab.events import assignment_event, outcome_event
from mmrank.serve.reorder import Decision
from mmrank.serve.rollout import in_rollout, rollout_bucket


class OutcomeRequest(BaseModel):
    """What a client reports after the user acted on an answer."""

    query_id: str | int | float = Field(description="the query id of the /rerank request")
    clicks: list[str | int | float] = Field(default_factory=list, description="candidate ids the user clicked")
    value: float | None = Field(None, description="an optional outcome value (a purchase, a rating)")


class ABLogger:
    """Appends A/B events to ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: dict) -> None:
        """Append one event as a JSON line and flush it."""
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def assignment(self, obj: dict, decision: Decision, loaded, rollout_percent: float, started: float) -> None:
        """Log the answer to request ``obj``: arm, what was shown, the model's order, latency."""
        query_id = str(obj["query_id"])
        ids = [c["candidate_id"] for c in obj["candidates"]]
        model = None if decision.model_order is None else [ids[int(i)] for i in decision.model_order]
        self.write(assignment_event(
            ts=time.time(), query_id=query_id, arm="treatment" if in_rollout(query_id, rollout_percent) else "control",
            bucket=rollout_bucket(query_id), rollout_percent=rollout_percent, status=decision.status,
            reason=decision.reason, latency_ms=(time.perf_counter() - started) * 1000.0, model_id=loaded.model_id,
            model_version=loaded.version, shown=[ids[int(i)] for i in decision.order], model_order=model))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


def add_outcome_route(app: FastAPI, logger: ABLogger, auth) -> None:
    """``POST /ab/outcome``: append an outcome event (same token rule as /rerank)."""

    @app.post("/ab/outcome", dependencies=[Depends(auth)])
    async def outcome(body: OutcomeRequest):
        """Record that the user of ``query_id`` clicked ``clicks`` (and the optional ``value``)."""
        logger.write(outcome_event(ts=time.time(), query_id=str(body.query_id), clicks=[str(c) for c in body.clicks],
                                   value=body.value))
        return {"status": "recorded"}
