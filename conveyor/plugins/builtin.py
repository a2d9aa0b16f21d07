"""The built-in plugins, in the order the server mounts their routes: the demo tasks, the ingestion, the schedules,
the workflows and the webhooks (their dashboard pages), the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.demo import PLUGIN as DEMO
from conveyor.ingest.plugin import PLUGIN as INGESTION
from conveyor.plugins import DashboardPage, Plugin
from conveyor.schedules.plugin import PLUGIN as SCHEDULES
from conveyor.webhooks.plugin import PLUGIN as WEBHOOKS

if TYPE_CHECKING:
    from fastapi import APIRouter

    from conveyor.app import Conveyor


def _dashboard_router(app: Conveyor) -> APIRouter:
    # Imported when the server asks: making an app (in a worker, say) loads neither FastAPI nor Jinja.
    from conveyor.dashboard import create_dashboard

    return create_dashboard(app)


def _workflow_pages() -> Sequence[DashboardPage]:
    from conveyor.dashboard.workflows import WorkflowsPage

    return [WorkflowsPage()]


WORKFLOWS = Plugin("workflows", dashboard_pages=_workflow_pages)  # its REST routes and commands are core ones
DASHBOARD = Plugin("dashboard", router=_dashboard_router)
BUILTIN_PLUGINS: tuple[Plugin, ...] = (DEMO, INGESTION, SCHEDULES, WORKFLOWS, WEBHOOKS, DASHBOARD)

__all__ = ["BUILTIN_PLUGINS", "DASHBOARD", "DEMO", "INGESTION", "SCHEDULES", "WEBHOOKS", "WORKFLOWS"]
