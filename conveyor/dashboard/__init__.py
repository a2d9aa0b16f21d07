"""The built-in web dashboard: watch and steer every job live.

`create_dashboard(conveyor)` returns a FastAPI router serving the overview at `/` and the other pages under `/ui/`
(static files under `/ui/static/`, live events at `/ui/events`). The REST API's app factory includes it; to serve it
on its own:

>>> app = FastAPI()
>>> app.include_router(create_dashboard(conveyor))

With an API token (`CONVEYOR_API_TOKEN`, or `api_token=`) every page asks for it once and then keeps an HttpOnly,
SameSite=Strict session cookie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter

    from conveyor.app import Conveyor

__all__ = ["create_dashboard"]


def create_dashboard(conveyor: Conveyor, *, api_token: str | None = None) -> APIRouter:
    """The dashboard's routes for this app; `api_token` defaults to the app's `CONVEYOR_API_TOKEN`."""
    from conveyor.dashboard._routes import Dashboard

    return Dashboard(conveyor, api_token).router
