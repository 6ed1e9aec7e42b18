"""Dropping slow clients: a whole request must arrive within ``--read-timeout-s``.

uvicorn (h11) has no read timeout: its keep-alive timer runs only between requests and the first
byte of a new request cancels it, so a client that sends half its headers — or one byte a minute —
holds its socket open for ever. Two guards, one per phase:

* headers — this protocol arms a timer when a connection opens and after each answer; if the
  request's headers are not complete when it fires, the client gets ``408`` and the connection is
  closed (the app never saw a request, so nothing is counted in ``/metrics``);
* body — ``middleware.BodyLimitMiddleware`` gives the body the same deadline from the moment the
  headers arrived, answers ``408`` (counted, route and code) and closes the connection.

A normal client sends a request in microseconds on a LAN; the default 10 s only drops the ones
that are stuck or hostile.

Two variants of the header guard, one per uvicorn HTTP parser: ``httptools`` (C, llhttp) when it is
installed — it costs a fraction of the CPU per request of ``h11`` (pure Python), which matters on a
2-core box where the parser shares the cores with the model — and ``h11`` otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
TIMEOUT_BODY = b'{"detail": "request not received in time - send the whole request at once", "errors": []}'


class _HeaderDeadline:
    """The header deadline, for either uvicorn HTTP protocol (mixed in before it): a timer armed
    when a connection opens and after each answer, disarmed when the headers are in or the
    connection is gone; when it fires while ``_headers_due()``, the client gets 408 and is closed."""

    read_timeout_s: float = 10.0
    _read_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection: its first request's headers are due within the deadline."""
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: no timer may fire on it."""
        self._disarm_read_timer()
        super().connection_lost(exc)

    def _headers_due(self) -> bool:
        raise NotImplementedError

    def _on_arm(self) -> None:
        """Called as the timer is armed (the httptools variant notes that headers are due)."""

    def _arm_read_timer(self) -> None:
        self._disarm_read_timer()
        if not self.transport.is_closing():
            self._on_arm()
            self._read_timer = self.loop.call_later(self.read_timeout_s, self._headers_too_slow)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _headers_too_slow(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or not self._headers_due():
            return
        if self.cycle is None or self.cycle.response_complete:  # no answer is being written
            self.transport.write(REQUEST_TIMEOUT_RESPONSE % (len(TIMEOUT_BODY), TIMEOUT_BODY))
        self.transport.close()


class ReadTimeoutH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline on receiving each request's headers."""

    def on_response_complete(self) -> None:
        """An answer is out: the next request's headers are due within the deadline."""
        super().on_response_complete()
        self._arm_read_timer()

    def data_received(self, data: bytes) -> None:
        """Bytes in; once the headers are complete the header deadline no longer applies."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # headers complete: the body has its own deadline
            self._disarm_read_timer()

    def _headers_due(self) -> bool:
        return self.conn.their_state is h11.IDLE


def _httptools_protocol() -> type | None:
    """``ReadTimeoutHttpToolsProtocol``, or None when httptools is not installed."""
    if importlib.util.find_spec("httptools") is None:
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class ReadTimeoutHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with a deadline on receiving each request's headers.

        httptools calls ``on_headers_complete`` once a request's headers are in: that disarms the
        timer; it is armed when the connection opens and after each answer unless a pipelined
        request (headers already parsed) is about to start."""

        _awaiting_headers = False

        def on_headers_complete(self) -> None:
            """The request's headers are in: the body has its own deadline (the middleware's)."""
            self._awaiting_headers = False
            self._disarm_read_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            """An answer is out: the next request's headers are due, unless already queued."""
            queued = bool(self.pipeline)
            super().on_response_complete()
            if not queued:
                self._arm_read_timer()

        def _on_arm(self) -> None:
            self._awaiting_headers = True

        def _headers_due(self) -> bool:
            return self._awaiting_headers

    return ReadTimeoutHttpToolsProtocol


def read_timeout_protocol(seconds: float, parser: str = "auto") -> type:
    """The protocol class to pass as uvicorn's ``http=``, with its header deadline set.

    ``parser``: ``httptools``, ``h11``, or ``auto`` (httptools when installed, else h11)."""
    base = None if parser == "h11" else _httptools_protocol()
    if base is None and parser == "httptools":
        raise RuntimeError("httptools is not installed — pip install httptools, or use the h11 parser")
    base = base or ReadTimeoutH11Protocol
    return type(base.__name__, (base,), {"read_timeout_s": float(seconds)})
