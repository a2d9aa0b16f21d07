"""Plugins: how a part of Conveyor adds its tasks, HTTP routes, commands and dashboard pages, so that no host names
the parts it carries. The demo tasks, the ingestion and the dashboard are plugins (`conveyor.plugins.builtin`);
a user's package can be one too:

>>> from conveyor.plugins import Plugin
>>> reports = Plugin("reports", tasks=register_report_tasks, router=reports_router)
>>> app = Conveyor(plugins=[reports])

Each host asks every plugin for its share: `Conveyor` calls `tasks(app)` when it is made (the built-ins' only if
`demo_tasks` / `ingest_tasks` say so), the server mounts `router(app)` at its root (REST routes carry the
`/api/v1` prefix themselves), the dashboard adds `dashboard_pages()` and links them in its navigation, and the
command line calls `cli(root)` for the built-in plugins, and `conveyor check` calls `check(app, print)`. A hook
that builds routes, commands or pages imports them when it is called, so that making an app (in a worker, say)
loads no web or terminal library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from conveyor.app import Conveyor
    from conveyor.dashboard import Dashboard

__all__ = ["DashboardPage", "Plugin"]


class DashboardPage(Protocol):
    """A page a plugin adds to the dashboard: its link in the navigation, and its routes."""

    @property
    def nav_label(self) -> str: ...

    @property
    def nav_path(self) -> str: ...

    def add_routes(self, dashboard: Dashboard) -> None: ...


@dataclass(frozen=True, slots=True)
class Plugin:
    """A part that plugs into Conveyor; each hook is optional."""

    name: str
    tasks: Callable[[Conveyor], None] | None = None
    router: Callable[[Conveyor], APIRouter] | None = None
    cli: Callable[[typer.Typer], None] | None = None
    dashboard_pages: Callable[[], Sequence[DashboardPage]] | None = None
    # lines `conveyor check` prints after its own: (app, print) -> None, print taking Rich markup
    check: Callable[[Conveyor, Callable[[str], None]], None] | None = None
