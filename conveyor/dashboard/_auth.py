"""Logging in and out, and the gates in front of every route: pages redirect to the login, data feeds answer 401,
actions also check the origin and the CSRF token."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from conveyor.dashboard._security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    safe_next,
    same_origin,
)

if TYPE_CHECKING:
    from conveyor.dashboard._core import Dashboard

LOGIN_FAILURE_DELAY_S = 0.5


class Auth:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.guard = dashboard.guard

    def add_routes(self) -> None:
        r = self.dashboard.router
        r.add_api_route("/ui/login", self.login_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/login", self.login, methods=["POST"])
        r.add_api_route("/ui/logout", self.logout, methods=["POST"])

    # ------------------------------------------------------------------------------------------ gates
    def page_gate(self, request: Request) -> Response | None:
        """None for a logged-in visitor, else the redirect to the login page."""
        if self.guard.authenticated(request):
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)

    def data_gate(self, request: Request) -> Response | None:
        if self.guard.authenticated(request):
            return None
        return JSONResponse({"error": {"code": "unauthorized", "message": "log in first"}}, status_code=401)

    async def action_gate(self, request: Request) -> tuple[Response | None, dict[str, str]]:
        """State-changing requests: same origin, logged in, and the CSRF token. Returns the parsed form."""
        refuse = self.dashboard.refuse
        if not same_origin(request):
            return refuse(403, "forbidden", "cross-site request refused"), {}
        if not self.guard.authenticated(request):
            return refuse(401, "unauthorized", "log in first"), {}
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        if not self.guard.csrf_valid(request, request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)):
            return refuse(403, "forbidden", "missing or invalid CSRF token; reload the page"), {}
        return None, form

    # ------------------------------------------------------------------------------------------ routes
    async def login_page(self, request: Request, next: str = "/") -> Response:  # noqa: A002
        if not self.guard.enabled or self.guard.authenticated(request):
            return RedirectResponse(safe_next(next), status_code=303)
        return self.dashboard.render(request, "login.html", next=safe_next(next), error=None)

    async def login(self, request: Request) -> Response:
        if not same_origin(request):
            return self.dashboard.refuse(403, "forbidden", "cross-site request refused")
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        target = safe_next(form.get("next"))
        if not self.guard.enabled:
            return RedirectResponse(target, status_code=303)
        if not self.guard.check_token(form.get("token", "")):
            await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
            return self.dashboard.render(request, "login.html", 401, next=target, error="That token is not right.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.new_session(),
            max_age=int(SESSION_MAX_AGE_S),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused, _ = await self.action_gate(request)
        if refused is not None:
            return refused
        response = RedirectResponse("/ui/login" if self.guard.enabled else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
