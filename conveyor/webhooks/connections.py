"""The sender's HTTP client: aiohttp, with keep-alive connections per endpoint, to the address the sender checked.

Why aiohttp and not httpx: a POST through httpx's client cost the sender about 1 ms of CPU (cProfile: httpcore's
pool and anyio's wrappers), through aiohttp 0.14-0.16 ms (8 in flight to bench/webhook_sink.py, one process). At
1 ms a delivery, two worker processes on two cores beside the receiver and the database cannot send 1,000 a second.

A webhook needs little of a general client, and this one asks for no more: POST with a body, no redirects (a 3xx is
an answer like any other), no proxy, no cookies, no automatic headers, and of the answer its status code only (its
body is read, to reuse the connection, and dropped; past `max_body` bytes the connection is closed instead). The
request goes to the checked address (`Endpoint.address`, never resolved again: no DNS rebinding between the check
and the connection); TLS checks the certificate against the URL's host name.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import certifi

if TYPE_CHECKING:
    import aiohttp

IDLE_S = 2.0  # an idle connection is reused this long only: servers close idle ones after a few seconds (uvicorn: 5)
MAX_PER_ENDPOINT = 16  # connections open at once per endpoint


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

    def url(self, target: str) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{address}:{self.port}{target}"


class Connections:
    """One aiohttp session (its connection pool) for one event loop; made at the first request."""

    def __init__(
        self, connect_timeout_s: float, max_body: int, ssl_context: ssl.SSLContext | None = None, *,
        idle_s: float = IDLE_S,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.idle_s = idle_s
        self.max_body = max_body
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def post(self, endpoint: Endpoint, target: str, headers: Sequence[tuple[str, str]], body: bytes) -> int:
        """POST `body` to `target` (path and query) at `endpoint`; the answer's status code. Raises SendError when
        no complete answer came (the caller bounds the whole with a time-out)."""
        import aiohttp  # at the first delivery, not when a worker starts: it costs ~180 ms of CPU per process

        try:
            reused: dict[str, bool] = {}
            try:
                return await self._post(endpoint, target, headers, body, reused)
            except aiohttp.ServerDisconnectedError:
                if not reused:
                    raise
                # a kept-alive connection the server closed as the request went out: once more, on a new one
                return await self._post(endpoint, target, headers, body, {})
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConnectError(f"certificate check failed: {exc.certificate_error}") from None
        except aiohttp.ConnectionTimeoutError:
            raise ConnectTimeoutError(f"no connection within {self.connect_timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(str(exc.os_error) or type(exc.os_error).__name__) from None
        except aiohttp.ServerDisconnectedError:
            raise RemoteProtocolError("the server closed the connection without a complete answer") from None
        except aiohttp.ClientResponseError as exc:  # the answer could not be parsed
            raise RemoteProtocolError(f"not an HTTP/1.1 answer: {exc.message}") from None
        except aiohttp.ClientPayloadError as exc:
            raise RemoteProtocolError(f"the connection broke during the answer: {exc}") from None
        except aiohttp.ClientError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from None

    async def _post(
        self, endpoint: Endpoint, target: str, headers: Sequence[tuple[str, str]], body: bytes, reused: dict[str, bool]
    ) -> int:
        """One request; `reused` gets a key when it went on a kept-alive connection."""
        session = self._session or self._open()
        tls = endpoint.scheme == "https"
        options: dict[str, Any] = {"ssl": self._context(), "server_hostname": endpoint.host} if tls else {}
        async with session.post(endpoint.url(target), data=body, headers=list(headers), allow_redirects=False,
                                trace_request_ctx=reused, **options) as answer:
            read = await answer.content.read(self.max_body + 1)
            if len(read) > self.max_body:  # the rest is not read: the connection is not reused
                answer.close()
            return answer.status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, limit_per_host=MAX_PER_ENDPOINT, keepalive_timeout=self.idle_s,
                                         use_dns_cache=False)
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_reuseconn.append(_note_reuse)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[tracing],
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
            trust_env=False,
        )
        return self._session

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl


async def _note_reuse(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    context.trace_request_ctx["reused"] = True
