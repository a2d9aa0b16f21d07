"""The built-in web dashboard: watch and steer every job live.

`create_dashboard(conveyor)` returns a FastAPI router serving the overview at `/` and the other pages under `/ui/`
(static files under `/ui/static/`, live events at `/ui/events`), with the pages of the app's plugins (the
ingestion's sources, say) linked in its navigation. The REST API's app factory includes it; to serve it on its own:

>>> app = FastAPI()
>>> app.include_router(create_dashboard(conveyor))

With an API token (`CONVEYOR_API_TOKEN`, or `api_token=`) every page asks for it once and then keeps an HttpOnly,
SameSite=Strict session cookie.

The modules: `_core` (the `Dashboard`: router, templates, answers), `_auth` (login and the gates), `_pages` (pages,
feeds, live events), `_actions` (POST actions), `_formatting` (template filters), `_forms` (the enqueue form from a
task's schema), `_security` (sessions, CSRF, headers); `sources` is the ingestion plugin's page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.dashboard._core import Dashboard

if TYPE_CHECKING:
    from fastapi import APIRouter

    from conveyor.app import Conveyor

__all__ = ["Dashboard", "create_dashboard"]


def create_dashboard(conveyor: Conveyor, *, api_token: str | None = None) -> APIRouter:
    """The dashboard's routes for this app; `api_token` defaults to the app's `CONVEYOR_API_TOKEN`."""
    return Dashboard(conveyor, api_token).router
