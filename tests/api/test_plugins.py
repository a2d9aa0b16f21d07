"""Plugins through the real server: the built-ins' routes are mounted, and a user's plugin adds its tasks, its REST
routes and a dashboard page linked in the navigation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from conveyor import Conveyor
from conveyor.api import API_PREFIX
from conveyor.dashboard import Dashboard
from conveyor.plugins import Plugin
from tests.api.conftest import RunningServer, start_server


def test_the_builtin_parts_are_mounted(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert f"{API_PREFIX}/sources" in paths and f"{API_PREFIX}/search" in paths  # the ingestion plugin's
    overview = client.get("/")  # the dashboard plugin's
    assert overview.status_code == 200 and 'href="/ui/sources"' in overview.text


class ReportsPage:
    nav_label = "Reports"
    nav_path = "/ui/reports"

    def add_routes(self, dashboard: Dashboard) -> None:
        async def page(request: Request) -> Response:
            if (gate := dashboard.auth.page_gate(request)) is not None:
                return gate
            count = await dashboard.call(lambda: len(dashboard.conveyor.tasks))
            return HTMLResponse(f"<p>{count} tasks</p>")

        dashboard.router.add_api_route(self.nav_path, page, methods=["GET"])


def _reports_router(app: Conveyor) -> APIRouter:
    router = APIRouter(prefix=f"{API_PREFIX}/reports")

    @router.get("")
    def latest() -> dict[str, Any]:
        return {"tasks": sorted(t for t in app.tasks if t.startswith("reports."))}

    return router


def _reports_tasks(app: Conveyor) -> None:
    @app.task(name="reports.build")
    def build(title: str) -> dict[str, str]:
        return {"title": title}


REPORTS = Plugin("reports", tasks=_reports_tasks, router=_reports_router, dashboard_pages=lambda: [ReportsPage()])


@pytest.fixture
def reports_server(sqlite_url: str) -> Iterator[RunningServer]:
    conveyor = Conveyor(sqlite_url, plugins=[REPORTS])
    running = start_server(conveyor)
    yield running
    running.stop()
    conveyor.close()


def test_a_users_plugin_adds_tasks_routes_and_a_page(reports_server: RunningServer) -> None:
    with reports_server.client() as client:
        assert client.get(f"{API_PREFIX}/reports").json() == {"tasks": ["reports.build"]}
        created = client.post(f"{API_PREFIX}/jobs", json={"type": "reports.build", "args": {"title": "Q3"}})
        assert created.status_code == 201
        page = client.get("/ui/reports")
        assert page.status_code == 200 and "tasks</p>" in page.text
        assert page.headers["content-security-policy"]  # the dashboard's routes all carry its headers
        overview = client.get("/").text
        assert 'href="/ui/reports"' in overview and 'href="/ui/sources"' in overview
