"""The dashboard's pages (overview, jobs, one job, the enqueue form), their small JSON feeds, the static files and
the live event stream."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from conveyor.api.events import EventFilter, EventHub, EventStreamResponse
from conveyor.dashboard._formatting import STATUSES
from conveyor.dashboard._forms import EXTRA_FIELD, accepts_extra, form_fields

if TYPE_CHECKING:
    from conveyor.dashboard._core import Dashboard
    from conveyor.job import QueueInfo

PAGE_SIZE = 50
BUSIEST_KEYS = 5  # keys shown per keyed queue (fair limits): the busiest, running then ready
MAX_KEYED_QUEUES = 10


class Pages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.conveyor = dashboard.conveyor
        self._own_hub: EventHub | None = None  # when mounted without the REST API's app (and its hub)

    def add_routes(self) -> None:
        r = self.dashboard.router
        r.add_api_route("/", self.overview, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui", self.ui_root, methods=["GET"])
        r.add_api_route("/ui/", self.ui_root, methods=["GET"])
        r.add_api_route("/ui/static/{name}", self.static_file, methods=["GET"])
        r.add_api_route("/ui/jobs", self.jobs_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/jobs/{job_id}", self.job_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/enqueue", self.enqueue_page, methods=["GET"], response_class=HTMLResponse)

    def add_feeds(self) -> None:
        r = self.dashboard.router
        r.add_api_route("/ui/data/overview", self.overview_data, methods=["GET"])
        r.add_api_route("/ui/data/jobs/{job_id}", self.job_data, methods=["GET"])
        r.add_api_route("/ui/events", self.events, methods=["GET"])

    async def ui_root(self) -> Response:
        return RedirectResponse("/", status_code=307)

    async def static_file(self, request: Request, name: str) -> Response:
        entry = self.dashboard.static.get(name)
        if entry is None:
            return Response("not found", status_code=404, media_type="text/plain")
        data, content_type, etag = entry
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=content_type, headers=headers)

    # ------------------------------------------------------------------------------------------ overview
    async def _overview_state(self) -> dict[str, Any]:
        call = self.dashboard.call
        stats, queues, workers = await asyncio.gather(
            call(self.conveyor.stats), call(self.conveyor.list_queues), call(self.conveyor.list_workers)
        )
        keyed = [q.name for q in queues if q.keyed][:MAX_KEYED_QUEUES]
        groups = await asyncio.gather(*(call(self.conveyor.list_groups, name, limit=BUSIEST_KEYS) for name in keyed))
        return {
            "groups": [{"queue": name, "total": total, "keys": [g.to_dict() for g in found]}
                       for name, (found, total) in zip(keyed, groups, strict=True)],
            "counts": {s: stats.counts.get(s, 0) for s in STATUSES},
            "counts_by_type": stats.counts_by_type,
            "queues": [q.to_dict() for q in queues],
            "workers": [w.to_dict() for w in workers],
            "throughput": stats.throughput,
            "duration_series": stats.extra.get("duration_series", []),
            "durations": stats.durations,
            "unserved": stats.unserved,
            "generated_at": datetime.now(UTC).isoformat(),
        }

    async def overview(self, request: Request) -> Response:
        if (gate := self.dashboard.auth.page_gate(request)) is not None:
            return gate
        state = await self._overview_state()
        return self.dashboard.render(request, "overview.html", state=state, state_json=state)

    async def overview_data(self, request: Request) -> Response:
        if (gate := self.dashboard.auth.data_gate(request)) is not None:
            return gate
        return JSONResponse(await self._overview_state(), headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------------------------------ jobs
    async def jobs_page(self, request: Request) -> Response:
        d = self.dashboard
        if (gate := d.auth.page_gate(request)) is not None:
            return gate
        params = request.query_params
        q = params.get("q", "").strip()
        if q:
            job = await d.call(self.conveyor.get_job, q)
            if job is not None:
                return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)
        status = params.get("status") or None
        filters = {
            "status": status if status in STATUSES else None,
            "type": params.get("type") or None,
            "queue": params.get("queue") or None,
            "tag": params.get("tag") or None,
        }
        cursor = params.get("cursor") or None
        page = await d.call(self.conveyor.list_jobs, **filters, limit=PAGE_SIZE, cursor=cursor)
        stats, queues = await asyncio.gather(d.call(self.conveyor.stats), d.call(self.conveyor.list_queues))
        active = {k: v for k, v in filters.items() if v is not None}
        return d.render(
            request,
            "jobs.html",
            jobs=page.jobs,
            next_cursor=page.next_cursor,
            cursor=cursor,
            filters=filters,
            active=active,
            filter_query=urlencode(active),
            tab_urls=_tab_urls(active),
            next_url=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            older_url="/ui/jobs?" + urlencode({**active, "cursor": page.next_cursor or ""}),
            search=q,
            not_found=bool(q),
            types=sorted(set(self.conveyor.tasks) | set(stats.counts_by_type)),
            queues=[qi.name for qi in queues],
            counts=_scoped_counts(filters, stats.counts, stats.counts_by_type, queues),
            count_scope=_count_scope(filters),
        )

    async def job_page(self, request: Request, job_id: str) -> Response:
        d = self.dashboard
        if (gate := d.auth.page_gate(request)) is not None:
            return gate
        job = await d.call(self.conveyor.get_job, job_id)
        if job is None:
            return d.render(request, "not_found.html", 404, job_id=job_id)
        events = await d.call(self.conveyor.backend.job_events, job_id)
        return d.render(request, "job.html", job=job, events=events)

    async def job_data(self, request: Request, job_id: str) -> Response:
        d = self.dashboard
        if (gate := d.auth.data_gate(request)) is not None:
            return gate
        job = await d.call(self.conveyor.get_job, job_id)
        if job is None:
            return d.refuse(404, "not_found", f"job {job_id} not found")
        events = await d.call(self.conveyor.backend.job_events, job_id)
        return JSONResponse({"job": job.to_dict(), "events": [e.to_dict() for e in events]})

    # ------------------------------------------------------------------------------------------ enqueue
    def enqueue_context(self, chosen: str | None) -> dict[str, Any]:
        """What the enqueue form shows for the chosen task (default: the first one)."""
        tasks = sorted(self.conveyor.tasks)
        name = chosen if chosen in self.conveyor.tasks else (tasks[0] if tasks else None)
        task = self.conveyor.tasks[name] if name else None
        schema = task.args_schema() if task else {}
        return {
            "tasks": tasks,
            "task": task,
            "task_name": name,
            "fields": form_fields(schema),
            "extra_allowed": accepts_extra(schema),
            "extra_field": EXTRA_FIELD,
            "default_retries": self.conveyor.settings.max_retries,
        }

    async def enqueue_page(self, request: Request, type: str | None = None) -> Response:  # noqa: A002
        if (gate := self.dashboard.auth.page_gate(request)) is not None:
            return gate
        return self.dashboard.render(request, "enqueue.html", values={}, error=None, **self.enqueue_context(type))

    # ------------------------------------------------------------------------------------------ live
    async def events(self, request: Request) -> Response:
        """The live job stream of the pages: the REST API's event hub (one outbox poller per server, shut down
        with it), behind the dashboard's session, since a browser's EventSource cannot send a Bearer header."""
        if (gate := self.dashboard.auth.data_gate(request)) is not None:
            return gate
        hub = getattr(request.app.state, "hub", None)
        if not isinstance(hub, EventHub):
            hub = self._own_hub = self._own_hub or EventHub(self.conveyor)
        p = request.query_params
        flt = EventFilter(
            job_id=p.get("job_id") or None, type=p.get("type") or None, queue=p.get("queue") or None,
            tag=p.get("tag") or None,
        )
        last = request.headers.get("last-event-id", "").strip()
        sub, position = await hub.subscribe(flt)
        try:
            backlog = await hub.replay(int(last), position, flt) if last.isdigit() else []
        except BaseException:
            hub.unsubscribe(sub)
            raise
        return EventStreamResponse(hub, sub, backlog)


def _tab_urls(active: dict[str, str]) -> dict[str, str]:
    """The status tabs' links: each status with the other filters kept."""
    others = {k: v for k, v in active.items() if k != "status"}
    return {s: "/ui/jobs?" + urlencode({"status": s, **others}) if s else "/ui/jobs?" + urlencode(others)
            for s in ["", *STATUSES]}


def _count_scope(filters: dict[str, str | None]) -> str:
    """Which counts the status tabs show: of one type, of one queue, of everything, or none (no cheap count)."""
    if filters["tag"] or (filters["type"] and filters["queue"]):
        return "none"
    if filters["type"]:
        return "type"
    return "queue" if filters["queue"] else "all"


def _scoped_counts(
    filters: dict[str, str | None],
    counts: dict[str, int],
    by_type: dict[str, dict[str, int]],
    queues: list[QueueInfo],
) -> dict[str, int] | None:
    scope = _count_scope(filters)
    if scope == "type":
        return by_type.get(filters["type"] or "", {})
    if scope == "queue":
        return next((q.counts for q in queues if q.name == filters["queue"]), {})
    return counts if scope == "all" else None
