"""Dashboard security: the login session, CSRF protection and the response headers every page carries.

The session cookie holds a value derived from the API token (an HMAC keyed by it), never the token itself: the REST
API accepts the same cookie (`conveyor.api.middleware.session_value`), and changing the token ends every session.
The CSRF token is an HMAC of the session (or, with no API token, of a per-process secret); state-changing requests
must also come from the dashboard's own origin (Origin, else Referer).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from conveyor.api.middleware import session_value

SESSION_COOKIE = "conveyor_session"
SESSION_MAX_AGE_S = 7 * 86400
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Guard:
    """Decides who may see the dashboard and which state-changing requests to accept."""

    def __init__(self, api_token: str | None) -> None:
        self.api_token = api_token or None
        if self.api_token:
            self._key = hashlib.sha256(b"conveyor-dashboard-session\0" + self.api_token.encode()).digest()
        else:
            self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return self.api_token is not None

    # ------------------------------------------------------------------------------------------ login
    def check_token(self, candidate: str) -> bool:
        if not self.api_token:
            return True
        return hmac.compare_digest(candidate.encode(), self.api_token.encode())

    def _sign(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        assert self.api_token is not None
        return session_value(self.api_token)

    def session_valid(self, value: str | None) -> bool:
        return bool(value) and self.api_token is not None and hmac.compare_digest(
            str(value).encode(), session_value(self.api_token).encode()
        )

    def authenticated(self, request: Request) -> bool:
        return not self.enabled or self.session_valid(request.cookies.get(SESSION_COOKIE))

    # ------------------------------------------------------------------------------------------ CSRF
    def csrf_token(self, request: Request) -> str:
        session = request.cookies.get(SESSION_COOKIE, "") if self.enabled else ""
        return self._sign("csrf:" + session)

    def csrf_valid(self, request: Request, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(str(submitted), self.csrf_token(request))


def same_origin(request: Request) -> bool:
    """Whether a state-changing request comes from a page of this very origin (Origin, else Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    host = request.headers.get("host", "")
    # The host only: behind a TLS-terminating proxy the scheme seen here may differ from the browser's.
    return bool(host) and urlsplit(source).netloc.lower() == host.lower()


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target limited to this site's own paths (no scheme, no host, no `//` or `\\` tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
