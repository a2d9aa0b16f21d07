"""The built-in plugins, in the order the server mounts their routes: the demo tasks, the ingestion, the webhooks'
dashboard page, the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.demo import PLUGIN as DEMO
from conveyor.ingest.plugin import PLUGIN as INGESTION
from conveyor.plugins import Plugin
from conveyor.webhooks.plugin import PLUGIN as WEBHOOKS

if TYPE_CHECKING:
    from fastapi import APIRouter

    from conveyor.app import Conveyor


def _dashboard_router(app: Conveyor) -> APIRouter:
    # Imported when the server asks: making an app (in a worker, say) loads neither FastAPI nor Jinja.
    from conveyor.dashboard import create_dashboard

    return create_dashboard(app)


DASHBOARD = Plugin("dashboard", router=_dashboard_router)
BUILTIN_PLUGINS: tuple[Plugin, ...] = (DEMO, INGESTION, WEBHOOKS, DASHBOARD)

__all__ = ["BUILTIN_PLUGINS", "DASHBOARD", "DEMO", "INGESTION", "WEBHOOKS"]
