"""The schedules page: every schedule with its cron in words, its next run and its last run (a link to the job), the
pause, resume, trigger and delete buttons, and a form to add one. The schedules plugin adds it
(`conveyor.schedules.plugin`); it uses the app's public `schedules` service, as a user's page would."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from conveyor.dashboard._security import safe_next
from conveyor.errors import ConveyorError, ScheduleNotFoundError
from conveyor.job import to_datetime

if TYPE_CHECKING:
    from conveyor.dashboard import Dashboard

PAGE = "/ui/schedules"


class SchedulesPage:
    nav_label = "Schedules"
    nav_path = PAGE

    def __init__(self) -> None:
        self._dashboard: Dashboard | None = None

    @property
    def dashboard(self) -> Dashboard:
        assert self._dashboard is not None, "add_routes binds the page to its dashboard"
        return self._dashboard

    def add_routes(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard
        r = dashboard.router
        r.add_api_route(PAGE, self.page, methods=["GET"])
        r.add_api_route(PAGE, self.add, methods=["POST"])
        r.add_api_route(PAGE + "/{name:path}/{action}", self.act, methods=["POST"])

    async def page(self, request: Request) -> Response:
        d = self.dashboard
        if (gate := d.auth.page_gate(request)) is not None:
            return gate
        schedules = await d.call(d.conveyor.schedules.all)
        rows = [
            {"s": s, "next": None if s.paused else to_datetime(s.next_run_at), "last": to_datetime(s.last_run_at)}
            for s in schedules
        ]
        return d.render(request, "schedules.html", rows=rows, tasks=sorted(d.conveyor.tasks), next_url=PAGE)

    async def add(self, request: Request) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        try:
            args = json.loads(form.get("args") or "{}")
        except json.JSONDecodeError as exc:
            return d.done(request, f"args: not JSON: {exc.msg}", PAGE, ok=False, status=422)
        fields: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "task": form.get("task", ""),
            "cron": form.get("cron", "").strip(),
            "timezone": form.get("timezone", "").strip() or "UTC",
            "args": args,
            "catch_up": form.get("catch_up") == "on",
        }
        if queue := form.get("queue", "").strip():
            fields["queue"] = queue
        try:
            made = await d.call(d.conveyor.schedules.create, **fields)
        except ConveyorError as exc:
            return d.done(request, exc.message, PAGE, ok=False, status=422 if exc.code != "invalid_state" else 409)
        return d.done(request, f"Added schedule {made.name}: {made.description}.", PAGE, schedule=made.to_dict())

    async def act(self, request: Request, name: str, action: str) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        back = safe_next(form.get("next"), PAGE)
        schedules = d.conveyor.schedules
        try:
            if action == "pause":
                await d.call(schedules.pause, name)
                message = f"Paused {name}."
            elif action == "resume":
                await d.call(schedules.resume, name)
                message = f"Resumed {name}."
            elif action == "trigger":
                job = await d.call(schedules.trigger, name)
                message = f"Triggered {name}: job {job.id}."
            elif action == "delete":
                await d.call(schedules.delete, name)
                message = f"Deleted {name}."
            else:
                return d.done(request, f"Unknown action {action!r}.", back, ok=False, status=404)
        except ScheduleNotFoundError as exc:
            return d.done(request, exc.message, back, ok=False, status=404)
        except ConveyorError as exc:
            return d.done(request, exc.message, back, ok=False, status=422)
        return d.done(request, message, back, name=name, action=action)
