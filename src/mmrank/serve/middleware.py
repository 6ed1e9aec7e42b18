"""Two small ASGI middlewares: request metrics, and the body reader that answers 413 before a byte
of an oversized body is parsed and 408 when the body does not arrive in time (pure ASGI: no
per-request task or copy overhead).

A client that goes away before its answer is counted with code ``499`` (nginx's "client closed
request"): it is neither a server error nor an answer the server gave.
"""

from __future__ import annotations

import asyncio
import json
import time

from mmrank.serve.prometheus import ServeMetrics


CLIENT_CLOSED = 499  # the metrics code of a request whose client disconnected before the answer


async def _send_json(send, status: int, body: dict, close: bool = False) -> None:
    data = json.dumps({"errors": [], **body}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:  # the rest of the request may still be on its way: do not read it as the next one
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Read the whole body first: 413 over ``max_bytes`` (by Content-Length, or by counting),
    408 when it has not all arrived ``read_timeout_s`` after the headers."""

    def __init__(self, app, max_bytes: int, read_timeout_s: float | None = None) -> None:
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_big = {"detail": f"request body larger than {self.max_bytes} bytes — send fewer or smaller candidates"}
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_json(send, 413, too_big, close=True)
        try:
            async with asyncio.timeout(self.read_timeout_s):  # no extra task per request, unlike wait_for
                body = await self._read(receive)
        except TimeoutError:
            return await _send_json(send, 408, {"detail": f"request body not received within {self.read_timeout_s:g} s"
                                                          " — send the whole request at once"}, close=True)
        if body is None:
            return  # the client went away (counted as 499 by MetricsMiddleware)
        if len(body) > self.max_bytes:
            return await _send_json(send, 413, too_big, close=True)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive) -> bytes | None:
        """The body; stops counting one byte past the limit; None when the client disconnected."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)


class MetricsMiddleware:
    """Count requests by route and status code and time them (routes outside ``routes`` → other)."""

    def __init__(self, app, metrics: ServeMetrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        code = None  # no answer started yet
        client_gone = False
        start = time.perf_counter()

        async def receive_and_watch():
            nonlocal client_gone
            message = await receive()
            if message["type"] == "http.disconnect":
                client_gone = True
            return message

        async def send_and_watch(message):
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_and_watch, send_and_watch)
        finally:
            if code is None:  # the server answers 500 if the app died; nobody to answer if the client left
                code = CLIENT_CLOSED if client_gone else 500
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, str(code)).inc()
