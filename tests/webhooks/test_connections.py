"""The sender's HTTP/1.1 client on real sockets: answers of every shape, connections kept alive and reused, a reused
connection the server had closed, TLS with a certificate checked (trustme's CA) or refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trustme

from conveyor.webhooks.connections import (
    ConnectError,
    Connections,
    Endpoint,
    RemoteProtocolError,
)

Handler = Callable[[int, bytes], bytes | None]  # (request number on its connection, request) -> raw answer or close


async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[asyncio.Server, list[list[bytes]]]:
    """A server that reads whole requests (head and content-length body) and answers what `handler` says; records
    the requests per connection."""
    connections: list[list[bytes]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[bytes] = []
        connections.append(seen)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                seen.append(request)
                answer = handler(len(seen), request)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if answer.startswith(b"HTTP/1.0") or b"\r\n\r\n" not in answer:  # ends with the connection
                    return
        except ConnectionError:  # the client dropped the connection (an answer too long for it)
            return
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    return server, connections


def endpoint(server: asyncio.Server, scheme: str = "http", host: str = "127.0.0.1") -> Endpoint:
    return Endpoint(scheme, "127.0.0.1", server.sockets[0].getsockname()[1], host)


def post(conns: Connections, where: Endpoint, body: bytes = b'{"x":1}') -> Awaitable[int]:
    return conns.post(where, "/hook?a=1", [("host", f"{where.host}:{where.port}"), ("webhook-id", "msg_1")], body)


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(test())


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_answers_of_every_shape() -> None:
    answers = {
        "/chunked": b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        "/redirect": b"HTTP/1.1 302 Found\r\nlocation: http://example.com/\r\ncontent-length: 0\r\n\r\n",
        "/eof": b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the connection",
        "/big": b"HTTP/1.1 500 Oops\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 1_000_000,
        "/garbage": b"SMTP ready\r\n\r\n",
    }

    def handler(n: int, request: bytes) -> bytes | None:
        return answers[request.split(b" ")[1].decode()]

    async def go() -> None:
        server, connections = await serve(handler)
        conns = Connections(5.0, 64 * 1024)
        where = endpoint(server)
        try:
            async def status(path: str) -> int:
                return await conns.post(where, path, [("host", "x")], b"{}")

            assert await status("/chunked") == 201
            assert await status("/interim") == 204
            assert await status("/redirect") == 302
            assert await status("/eof") == 200
            assert await status("/big") == 500  # read up to the limit, then the connection is dropped
            with pytest.raises(RemoteProtocolError, match="not an HTTP"):
                await status("/garbage")
        finally:
            await conns.close()
            server.close()
            await server.wait_closed()
        # kept alive after the chunked, interim and redirect answers, ended by the server after the HTTP/1.0 one,
        # dropped by the client after the one too long and the one that is not HTTP
        assert [len(c) for c in connections] == [4, 1, 1]

    run(go)


def test_a_truncated_answer_and_a_silent_close_are_errors() -> None:
    def handler(n: int, request: bytes) -> bytes | None:
        if b"/half" in request:
            return b"HTTP/1.1 200 O"
        return None  # closes without a word

    async def go() -> None:
        server, _ = await serve(handler)
        conns = Connections(5.0, 64 * 1024)
        try:
            with pytest.raises(RemoteProtocolError, match="without answering"):
                await conns.post(endpoint(server), "/silent", [("host", "x")], b"{}")
            with pytest.raises(RemoteProtocolError, match="in the middle of its answer"):
                await conns.post(endpoint(server), "/half", [("host", "x")], b"{}")
        finally:
            await conns.close()
            server.close()
            await server.wait_closed()

    run(go)


def test_connections_are_kept_alive_and_reused() -> None:
    async def go() -> None:
        server, connections = await serve(lambda n, request: OK)
        conns = Connections(5.0, 64 * 1024)
        try:
            for _ in range(5):
                assert await post(conns, endpoint(server)) == 200
            assert await asyncio.gather(*(post(conns, endpoint(server)) for _ in range(4))) == [200] * 4
        finally:
            await conns.close()
            server.close()
            await server.wait_closed()
        assert len(connections) <= 4 and sum(len(c) for c in connections) == 9
        assert len(connections[0]) >= 5
        first = connections[0][0].decode()
        assert first.startswith("POST /hook?a=1 HTTP/1.1\r\n") and "webhook-id: msg_1\r\n" in first
        assert first.endswith('content-length: 7\r\n\r\n{"x":1}')

    run(go)


def test_a_reused_connection_the_server_closed_is_replaced() -> None:
    """The server answers the first request of each connection, then closes the connection on the second without a
    word (as a server whose keep-alive ran out as the request went out): the request goes again on a new one."""

    async def go() -> None:
        server, connections = await serve(lambda n, request: OK if n == 1 else None)
        conns = Connections(5.0, 64 * 1024)
        try:
            assert await post(conns, endpoint(server)) == 200
            assert await post(conns, endpoint(server)) == 200
        finally:
            await conns.close()
            server.close()
            await server.wait_closed()
        assert [len(c) for c in connections] == [2, 1]

    run(go)


def test_a_refused_connection() -> None:
    async def go() -> None:
        server, _ = await serve(lambda n, request: OK)
        where = endpoint(server)
        server.close()
        await server.wait_closed()
        conns = Connections(5.0, 64 * 1024)
        with pytest.raises(ConnectError):
            await post(conns, where)
        await conns.close()

    run(go)


def test_tls_with_the_certificate_checked() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(server_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def go() -> None:
        server, connections = await serve(lambda n, request: OK, tls=server_context)
        good = Connections(5.0, 64 * 1024, trusting)
        default = Connections(5.0, 64 * 1024)  # the public CAs: this CA is not one of them
        try:
            assert await post(good, endpoint(server, "https", "hooks.test")) == 200
            assert await post(good, endpoint(server, "https", "hooks.test")) == 200  # the same TLS connection
            with pytest.raises(ConnectError, match="certificate"):
                await post(good, endpoint(server, "https", "other.test"))  # a name the certificate is not for
            with pytest.raises(ConnectError, match="certificate"):
                await post(default, endpoint(server, "https", "hooks.test"))
        finally:
            await good.close()
            await default.close()
            server.close()
            await server.wait_closed()
        assert len(connections[0]) == 2

    run(go)
