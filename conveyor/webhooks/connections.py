"""The sender's HTTP/1.1 client: keep-alive connections per endpoint (address, port, TLS name), each request written
in one piece, each answer parsed by httptools (uvicorn's parser, in C).

Why not httpx: a POST through httpx's client cost the sender about 1 ms of CPU, a POST through httpcore alone (its
connection pool and anyio's wrappers) 0.97 ms, the same POST on a kept-alive asyncio stream 0.04 ms (8 in flight,
to bench/webhook_sink.py; cProfile: the pool's per-request expiry checks, anyio's socket attributes and timeouts).
At 1 ms a delivery, two worker processes on two cores beside the receiver and the database cannot send 1,000 a
second. A webhook needs little of a general client: POST with a body, no redirects (a 3xx is an answer like any
other), no proxy, no cookies, and of the answer its status code only (its body is read, to reuse the connection,
and dropped; past `max_body` bytes the connection is closed instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

import certifi
import httptools

IDLE_S = 2.0  # an idle connection is reused this long only: servers close idle ones after a few seconds (uvicorn: 5)
MAX_IDLE = 16  # idle connections kept per endpoint
READ_BYTES = 65536


class SendError(Exception):
    """A request got no complete answer."""


class ConnectError(SendError):
    """No connection could be made (refused, unreachable, TLS handshake failed)."""


class ConnectTimeoutError(SendError):
    """Connecting took too long."""


class RemoteProtocolError(SendError):
    """The server closed the connection without a complete answer, or answered what is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request goes: the checked address, and the name for TLS (SNI and the certificate's check)."""

    scheme: str
    address: str
    port: int
    host: str


class _Answer:
    """httptools' callbacks: the final answer's status (1xx interim answers are skipped), its body's size, and
    whether the connection may carry another request (asked at the end of the message: afterwards the parser no
    longer knows)."""

    __slots__ = ("body_bytes", "complete", "keep_alive", "parser", "status")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.body_bytes = 0
        self.complete = False
        self.keep_alive = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float) -> bool:
        """Still open as far as this side can tell (a server that closed it has sent its EOF by now, mostly)."""
        return now - self.idle_since < IDLE_S and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class _NothingBackError(Exception):
    """The connection ended before a byte of the answer came (on a reused connection: try a new one)."""


class Connections:
    """Keep-alive connections by endpoint. Not thread-safe: one event loop uses it."""

    def __init__(self, connect_timeout_s: float, max_body: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_body = max_body
        self._ssl = ssl_context
        self._idle: dict[Endpoint, list[_Connection]] = {}

    async def post(self, endpoint: Endpoint, target: str, headers: Sequence[tuple[str, str]], body: bytes) -> int:
        """POST `body` to `target` (path and query) at `endpoint`; the answer's status code. Raises SendError or
        OSError when no complete answer came (the caller bounds the whole with a time-out)."""
        lines = [f"POST {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"content-length: {len(body)}\r\n\r\n")
        request = "\r\n".join(lines).encode("latin-1") + body
        while (conn := self._take(endpoint)) is not None:
            try:  # a reused connection the server closed meanwhile: the next one, then a new one
                return await self._exchange(endpoint, conn, request)
            except _NothingBackError:
                continue
        conn = await self._connect(endpoint)
        try:
            return await self._exchange(endpoint, conn, request)
        except _NothingBackError:
            raise RemoteProtocolError("the server closed the connection without answering") from None

    async def close(self) -> None:
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError, ssl.SSLError):
                await conn.writer.wait_closed()

    def _take(self, endpoint: Endpoint) -> _Connection | None:
        idle = self._idle.get(endpoint)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now):
                return conn
            conn.close()
        return None

    def _keep(self, endpoint: Endpoint, conn: _Connection) -> None:
        idle = self._idle.setdefault(endpoint, [])
        if len(idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())  # the CA bundle httpx trusts
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        tls = endpoint.scheme == "https"
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    endpoint.address, endpoint.port, ssl=self._context() if tls else None,
                    server_hostname=endpoint.host if tls else None, limit=READ_BYTES,
                )
        except TimeoutError:
            raise ConnectTimeoutError(f"no connection within {self.connect_timeout_s:g}s") from None
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
            raise ConnectError(str(exc) or type(exc).__name__) from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(reader, writer)

    async def _exchange(self, endpoint: Endpoint, conn: _Connection, request: bytes) -> int:
        """Send, read the answer; keep the connection if both sides may reuse it, else close it (also on any
        error or cancellation: a connection with half an exchange on it is never reused)."""
        keep = False
        try:
            answer = _Answer()
            received = False
            try:
                conn.writer.write(request)
                await conn.writer.drain()
                while not answer.complete:
                    chunk = await conn.reader.read(READ_BYTES)
                    if not chunk:
                        break
                    received = True
                    answer.parser.feed_data(chunk)
                    if answer.body_bytes > self.max_body:
                        break
            except (ConnectionResetError, BrokenPipeError) as exc:
                if not received:
                    raise _NothingBackError from exc
                raise RemoteProtocolError(f"the connection broke during the answer: {exc}") from None
            except httptools.HttpParserError as exc:
                raise RemoteProtocolError(f"not an HTTP/1.1 answer: {exc}") from None
            if not received:
                raise _NothingBackError
            if not answer.status:  # EOF before the end of the status line and headers
                raise RemoteProtocolError("the server closed the connection in the middle of its answer")
            keep = answer.complete and answer.keep_alive
            return answer.status
        finally:
            if keep:
                self._keep(endpoint, conn)
            else:
                conn.close()
