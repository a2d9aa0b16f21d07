"""The webhooks' plugin: their dashboard page (the REST routes are part of the API router, the CLI group of the
command line, and sending part of every worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.plugins import Plugin

if TYPE_CHECKING:
    from conveyor.plugins import DashboardPage


def _dashboard_pages() -> Sequence[DashboardPage]:
    from conveyor.dashboard.webhooks import WebhooksPage

    return [WebhooksPage()]


PLUGIN = Plugin("webhooks", dashboard_pages=_dashboard_pages)
