"""The dashboard bound to one app: its router, its templates and static files, and the answers every page gives
(a rendered page, an action's outcome, a refusal). The routes live in `_auth`, `_pages`, `_actions` and in the
plugins' pages."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import quote, unquote

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from conveyor.blocking import BlockingCalls
from conveyor.dashboard._actions import Actions
from conveyor.dashboard._auth import Auth
from conveyor.dashboard._formatting import environment
from conveyor.dashboard._pages import Pages
from conveyor.dashboard._security import CSRF_FIELD, SECURITY_HEADERS, Guard

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.plugins import DashboardPage

P = ParamSpec("P")
T = TypeVar("T")
FLASH_COOKIE = "conveyor_flash"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


class _SecureRoute(APIRoute):
    """Every dashboard response carries the security headers (CSP without inline scripts, no framing, ...)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            response = await handler(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return secured


@dataclass(frozen=True, slots=True)
class NavLink:
    label: str
    path: str


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """The packaged static files: name -> (content, content type, ETag)."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for entry in resources.files("conveyor.dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _STATIC_TYPES:
            data = entry.read_bytes()
            files[entry.name] = (data, _STATIC_TYPES[suffix], '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    return files


class Dashboard:
    """The dashboard bound to one Conveyor app; `router` holds its routes, those of each plugin's pages included.

    A plugin's page (`conveyor.plugins.DashboardPage`) adds its routes to `router`, guards them with `auth`, runs
    backend calls with `call`, and answers with `render` (a page) or `done` (the outcome of an action)."""

    def __init__(self, conveyor: Conveyor, api_token: str | None = None) -> None:
        self.conveyor = conveyor
        self.guard = Guard(api_token if api_token is not None else conveyor.settings.api_token)
        self.env = environment()
        self.static = _static_files()
        self.version = hashlib.sha256(b"".join(etag.encode() for _, _, etag in self.static.values())).hexdigest()[:10]
        self.router = APIRouter(route_class=_SecureRoute, include_in_schema=False)
        self._calls = BlockingCalls("conveyor-dashboard", threads=None)  # pages load in parallel
        self.auth = Auth(self)
        self.plugin_pages: list[DashboardPage] = [
            page for plugin in conveyor.plugins if plugin.dashboard_pages for page in plugin.dashboard_pages()
        ]
        self.nav_links = [NavLink(page.nav_label, page.nav_path) for page in self.plugin_pages]
        self.auth.add_routes()
        pages = Pages(self)
        pages.add_routes()
        Actions(self, pages).add_routes()
        for page in self.plugin_pages:
            page.add_routes(self)
        pages.add_feeds()

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Backend calls block; run them off the event loop."""
        return await self._calls.run(fn, *args, **kwargs)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        flash = unquote(request.cookies.get(FLASH_COOKIE, ""))
        html = self.env.get_template(template).render(
            request=request,
            path=request.url.path,
            csrf=self.guard.csrf_token(request),
            csrf_field=CSRF_FIELD,
            auth_enabled=self.guard.enabled,
            nav_links=self.nav_links,
            static_version=self.version,
            flash=flash,
            now=datetime.now(UTC),
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def done(
        self, request: Request, message: str, back: str, ok: bool = True, status: int = 409, **data: Any
    ) -> Response:
        """The answer to an action: JSON for the page's scripts, else a redirect back with a flash message.
        A refused action answers `status` (409: the job's state does not allow it; 422: invalid input)."""
        if "application/json" in request.headers.get("accept", ""):  # the page's scripts
            return JSONResponse({"ok": ok, "message": message, **data}, status_code=200 if ok else status)
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(FLASH_COOKIE, quote(message[:300]), max_age=60, path="/", httponly=True, samesite="strict")
        return response

    @staticmethod
    def refuse(status: int, code: str, message: str) -> JSONResponse:
        """A request refused before it did anything, with the API's error body."""
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
