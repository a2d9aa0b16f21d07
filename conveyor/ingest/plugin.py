"""The built-in ingestion as a plugin: its tasks, its REST routes, its commands and its dashboard page.

Each hook imports its part when it is called: a worker imports this module for the tasks only, and loads neither
FastAPI (the routes), Typer and Rich (the commands) nor Jinja (the page).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from conveyor.ingest.tasks import register_ingest_tasks
from conveyor.plugins import DashboardPage, Plugin

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from conveyor.app import Conveyor


def _tasks(app: Conveyor) -> None:
    register_ingest_tasks(app)


def _router(app: Conveyor) -> APIRouter:
    from fastapi import APIRouter

    from conveyor.api import API_PREFIX
    from conveyor.ingest.routes import create_router

    router = APIRouter(prefix=API_PREFIX)
    router.include_router(create_router(app))
    return router


def _cli(root: typer.Typer) -> None:
    from conveyor.ingest.cli import ingest_app, search_command

    root.add_typer(ingest_app, name="ingest")
    root.command("search")(search_command)


def _dashboard_pages() -> Sequence[DashboardPage]:
    from conveyor.dashboard.sources import SourcesPage

    return [SourcesPage()]


def _check(app: Conveyor, say: Callable[[str], None]) -> None:
    from conveyor.ingest.check import print_ingest_checks

    print_ingest_checks(app.database_url, say)


PLUGIN = Plugin(
    "ingest", tasks=_tasks, router=_router, cli=_cli, dashboard_pages=_dashboard_pages, check=_check
)
