"""Schedules as a built-in plugin: their REST routes, their commands and their dashboard page. Each hook imports its
part when called, so a worker that makes an app loads neither FastAPI, Typer nor Jinja for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.plugins import DashboardPage, Plugin

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from conveyor.app import Conveyor


def _router(app: Conveyor) -> APIRouter:
    from fastapi import APIRouter

    from conveyor.api import API_PREFIX
    from conveyor.api.schedules import create_schedules_router

    router = APIRouter(prefix=API_PREFIX)
    router.include_router(create_schedules_router(app))
    return router


def _cli(root: typer.Typer) -> None:
    from conveyor.cli.schedules import schedules_app

    root.add_typer(schedules_app, name="schedules")


def _dashboard_pages() -> Sequence[DashboardPage]:
    from conveyor.dashboard.schedules import SchedulesPage

    return [SchedulesPage()]


PLUGIN = Plugin("schedules", router=_router, cli=_cli, dashboard_pages=_dashboard_pages)
