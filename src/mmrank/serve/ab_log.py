"""The server's A/B log (``mmrank serve --ab-log FILE``): one assignment event per answered
/rerank, and ``POST /ab/outcome`` for the outcomes clients report later. The schema is
``mmrank.ab.events``; ``mmrank ab analyze`` reads the file.

Writes happen on the event loop's thread, one line each, as one ``write`` system call on a file
opened for appending (``O_APPEND``): a crash loses at most the line being written, and with
``--workers N`` the processes appending to the same file never interleave parts of their lines
(a buffered text file would split a line longer than its buffer into several writes). A lock
keeps lines whole should another thread of the same process ever write.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from fastapi import FastAPI
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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._lock = threading.Lock()

    def write(self, event: dict) -> None:
        """Append one event as a JSON line, in one write (see the module docstring)."""
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, line)
            while written < len(line):  # a regular file takes it whole; a full disk or a signal may not
                written += os.write(self._fd, line[written:])

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
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def add_outcome_route(app: FastAPI, logger: ABLogger, dependencies: list) -> None:
    """``POST /ab/outcome``: append an outcome event (same token rule as /rerank)."""

    @app.post("/ab/outcome", dependencies=dependencies)
    async def outcome(body: OutcomeRequest):
        """Record that the user of ``query_id`` clicked ``clicks`` (and the optional ``value``)."""
        logger.write(outcome_event(ts=time.time(), query_id=str(body.query_id), clicks=[str(c) for c in body.clicks],
                                   value=body.value))
        return {"status": "recorded"}
