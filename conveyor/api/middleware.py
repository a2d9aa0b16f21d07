"""Pure ASGI middleware: the API token, the request body size limit, and no NUL character in a path or query. All
answer in the SPEC's error shape."""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "conveyor_session"
PROTECTED_PREFIXES = ("/api/", "/metrics")


def session_value(token: str) -> str:
    """The session cookie's value for this token (the dashboard sets it after asking for the token once);
    derived from the token so the cookie never holds the token itself."""
    return hmac.new(token.encode(), b"conveyor dashboard session", hashlib.sha256).hexdigest()


async def _send_error(send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class TokenAuth:
    """With a token set, every `/api` path and `/metrics` need `Authorization: Bearer <token>` (or the dashboard's
    session cookie); everything else (health, docs, OpenAPI, the dashboard's pages) stays open."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.session = session_value(token).encode() if token else None

    def allowed(self, scope: Scope) -> bool:
        assert self.token is not None and self.session is not None
        auth = _header(scope, b"authorization")
        if auth is not None:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
                return True
        cookie = _header(scope, b"cookie")
        if cookie:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookie)
            except Exception:  # noqa: BLE001 - a malformed cookie header is just not a session
                return False
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        protected = path == "/api" or path == "/metrics" or path.startswith(PROTECTED_PREFIXES)
        if protected and not self.allowed(scope):
            await _send_error(
                send, 401, "unauthorized", "missing or wrong API token (Authorization: Bearer <token>)",
                [(b"www-authenticate", b'Bearer realm="conveyor"')],
            )
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses request bodies over the limit with 413: at once when Content-Length says so, else while reading.
    Multipart bodies (uploads) have their own, larger limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type") or ""
        limit = self.max_upload_bytes if content_type.startswith("multipart/") else self.max_bytes
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _send_error(send, 400, "bad_request", "invalid Content-Length", [])
                return
            if too_big:
                await _send_error(send, 413, "payload_too_large", f"the body is larger than {limit} bytes", [])
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read the body up to the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_error(send, 413, "payload_too_large", f"the body is larger than {limit} bytes", [])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class NoNulInUrl:
    """A NUL character (`%00`) in a path or query parameter is refused with 422 on both backends: PostgreSQL cannot
    hold one in a text value (it would fail in the database, as a 503), SQLite would store it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"%00" in scope.get("query_string", b"") or "\x00" in scope.get("path", "")):
            message = "the URL holds a NUL character (%00): no parameter takes one"
            await _send_error(send, 422, "invalid_request", message, [])
            return
        await self.app(scope, receive, send)
