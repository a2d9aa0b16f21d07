"""The dashboard's routes: server-rendered pages, their small JSON feeds, actions (POST) and live events."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

import jinja2
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from conveyor.api.events import EventFilter, EventHub, EventStreamResponse
from conveyor.dashboard._forms import EXTRA_FIELD, accepts_extra, form_fields, parse_args
from conveyor.dashboard._security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Guard,
    safe_next,
    same_origin,
)
from conveyor.errors import ConveyorError, InvalidArgumentsError, InvalidStateError, JobNotFoundError
from conveyor.job import JobStatus

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.job import Job, QueueInfo

PAGE_SIZE = 50
STATUSES = [s.value for s in JobStatus]
FLASH_COOKIE = "conveyor_flash"
LOGIN_FAILURE_DELAY_S = 0.5
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
ACTIONS = {"cancel", "retry", "delete"}


class _SecureRoute(APIRoute):
    """Every dashboard response carries the security headers (CSP without inline scripts, no framing, ...)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            response = await handler(request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return secured


# ---------------------------------------------------------------------------------------------------- formatting
def _relative(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h"), (math.inf, 86400, "d")):
        if seconds < limit:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return ""  # pragma: no cover - the last limit is infinite


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _job_duration(job: Job) -> float | None:
    if job.started_at is None:
        return None
    end = job.completed_at or datetime.now(UTC)
    return (end - job.started_at).total_seconds()


def _short(job_id: str) -> str:
    """The random tail of an id: UUIDv7 ids of one period share their (time) prefix."""
    return "…" + job_id[-8:] if len(job_id) > 12 else job_id


def _segment(value: str) -> str:
    """A value as one URL path segment (a queue named `a/b` stays one segment)."""
    return quote(str(value), safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conveyor.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        relative=_relative, pretty_json=_pretty_json, duration=_duration, short=_short, segment=_segment
    )
    env.globals.update(statuses=STATUSES, iso=lambda d: d.isoformat() if d else "", job_duration=_job_duration)
    return env


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """The packaged static files: name -> (content, content type, ETag)."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for entry in resources.files("conveyor.dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _STATIC_TYPES:
            data = entry.read_bytes()
            files[entry.name] = (data, _STATIC_TYPES[suffix], '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    return files


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


class Dashboard:
    """The dashboard bound to one Conveyor app; `router` holds its routes."""

    def __init__(self, conveyor: Conveyor, api_token: str | None = None) -> None:
        self.conveyor = conveyor
        self.guard = Guard(api_token if api_token is not None else conveyor.settings.api_token)
        self._own_hub: EventHub | None = None  # when mounted without the REST API's app (and its hub)
        self.env = _environment()
        self.static = _static_files()
        self.version = hashlib.sha256(b"".join(etag.encode() for _, _, etag in self.static.values())).hexdigest()[:10]
        self.has_sources = importlib.util.find_spec("conveyor.ingest") is not None
        self.router = APIRouter(route_class=_SecureRoute, include_in_schema=False)
        self._add_routes()

    # ------------------------------------------------------------------------------------------ helpers
    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Backend calls block; run them off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        flash = unquote(request.cookies.get(FLASH_COOKIE, ""))
        html = self.env.get_template(template).render(
            request=request,
            path=request.url.path,
            csrf=self.guard.csrf_token(request),
            csrf_field=CSRF_FIELD,
            auth_enabled=self.guard.enabled,
            has_sources=self.has_sources,
            static_version=self.version,
            flash=flash,
            now=datetime.now(UTC),
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def _login_redirect(self, request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)

    def _page_gate(self, request: Request) -> Response | None:
        return None if self.guard.authenticated(request) else self._login_redirect(request)

    def _data_gate(self, request: Request) -> Response | None:
        if self.guard.authenticated(request):
            return None
        return JSONResponse({"error": {"code": "unauthorized", "message": "log in first"}}, status_code=401)

    async def _action_gate(self, request: Request) -> tuple[Response | None, dict[str, str]]:
        """State-changing requests: same origin, logged in, and the CSRF token. Returns the parsed form."""
        if not same_origin(request):
            return _refuse(403, "forbidden", "cross-site request refused"), {}
        if not self.guard.authenticated(request):
            return _refuse(401, "unauthorized", "log in first"), {}
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        if not self.guard.csrf_valid(request, request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)):
            return _refuse(403, "forbidden", "missing or invalid CSRF token; reload the page"), {}
        return None, form

    def _done(
        self, request: Request, message: str, back: str, ok: bool = True, status: int = 409, **data: Any
    ) -> Response:
        """The answer to an action: JSON for the page's scripts, else a redirect back with a flash message.
        A refused action answers `status` (409: the job's state does not allow it; 422: invalid input)."""
        if _wants_json(request):
            return JSONResponse({"ok": ok, "message": message, **data}, status_code=200 if ok else status)
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(FLASH_COOKIE, quote(message[:300]), max_age=60, path="/", httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------------------------------------ routes
    def _add_routes(self) -> None:
        r = self.router
        r.add_api_route("/", self.overview, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui", self.ui_root, methods=["GET"])
        r.add_api_route("/ui/", self.ui_root, methods=["GET"])
        r.add_api_route("/ui/static/{name}", self.static_file, methods=["GET"])
        r.add_api_route("/ui/login", self.login_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/login", self.login, methods=["POST"])
        r.add_api_route("/ui/logout", self.logout, methods=["POST"])
        r.add_api_route("/ui/jobs", self.jobs_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/jobs/bulk", self.bulk, methods=["POST"])
        r.add_api_route("/ui/jobs/{job_id}", self.job_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/jobs/{job_id}/{action}", self.job_action, methods=["POST"])
        r.add_api_route("/ui/queues/{name:path}/{action}", self.queue_action, methods=["POST"])
        r.add_api_route("/ui/enqueue", self.enqueue_page, methods=["GET"], response_class=HTMLResponse)
        r.add_api_route("/ui/enqueue", self.enqueue, methods=["POST"])
        if self.has_sources:
            from conveyor.dashboard._sources import SourcesPage

            SourcesPage(self).add_routes()
        r.add_api_route("/ui/data/overview", self.overview_data, methods=["GET"])
        r.add_api_route("/ui/data/jobs/{job_id}", self.job_data, methods=["GET"])
        r.add_api_route("/ui/events", self.events, methods=["GET"])

    async def ui_root(self) -> Response:
        return RedirectResponse("/", status_code=307)

    async def static_file(self, request: Request, name: str) -> Response:
        entry = self.static.get(name)
        if entry is None:
            return Response("not found", status_code=404, media_type="text/plain")
        data, content_type, etag = entry
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=content_type, headers=headers)

    # ------------------------------------------------------------------------------------------ login
    async def login_page(self, request: Request, next: str = "/") -> Response:  # noqa: A002
        if not self.guard.enabled or self.guard.authenticated(request):
            return RedirectResponse(safe_next(next), status_code=303)
        return self._render(request, "login.html", next=safe_next(next), error=None)

    async def login(self, request: Request) -> Response:
        if not same_origin(request):
            return _refuse(403, "forbidden", "cross-site request refused")
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        target = safe_next(form.get("next"))
        if not self.guard.enabled:
            return RedirectResponse(target, status_code=303)
        if not self.guard.check_token(form.get("token", "")):
            await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
            return self._render(request, "login.html", 401, next=target, error="That token is not right.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.new_session(),
            max_age=int(SESSION_MAX_AGE_S),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused, _ = await self._action_gate(request)
        if refused is not None:
            return refused
        response = RedirectResponse("/ui/login" if self.guard.enabled else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------------------------------ overview
    async def _overview_state(self) -> dict[str, Any]:
        stats, queues, workers = await asyncio.gather(
            self._call(self.conveyor.stats),
            self._call(self.conveyor.list_queues),
            self._call(self.conveyor.list_workers),
        )
        return {
            "counts": {s: stats.counts.get(s, 0) for s in STATUSES},
            "counts_by_type": stats.counts_by_type,
            "queues": [q.to_dict() for q in queues],
            "workers": [w.to_dict() for w in workers],
            "throughput": stats.throughput,
            "duration_series": stats.extra.get("duration_series", []),
            "durations": stats.durations,
            "generated_at": datetime.now(UTC).isoformat(),
        }

    async def overview(self, request: Request) -> Response:
        if (gate := self._page_gate(request)) is not None:
            return gate
        state = await self._overview_state()
        return self._render(request, "overview.html", state=state, state_json=state)

    async def overview_data(self, request: Request) -> Response:
        if (gate := self._data_gate(request)) is not None:
            return gate
        return JSONResponse(await self._overview_state(), headers={"Cache-Control": "no-store"})

    async def queue_action(self, request: Request, name: str, action: str) -> Response:
        refused, form = await self._action_gate(request)
        if refused is not None:
            return refused
        back = safe_next(form.get("next"))
        try:
            if action == "pause":
                queue = await self._call(self.conveyor.pause_queue, name)
                message = f"Queue {name} paused: no new jobs start."
            elif action == "resume":
                queue = await self._call(self.conveyor.resume_queue, name)
                message = f"Queue {name} resumed."
            elif action == "concurrency":
                text = form.get("concurrency", "").strip()
                limit = None if text in ("", "0") else int(text)
                queue = await self._call(self.conveyor.set_queue, name, concurrency=limit)
                message = f"Queue {name}: " + (f"at most {limit} at once." if limit else "no concurrency limit.")
            else:
                return _refuse(404, "not_found", f"unknown queue action {action!r}")
        except (ValueError, InvalidArgumentsError) as exc:
            text = exc.message if isinstance(exc, ConveyorError) else "concurrency must be a whole number"
            return self._done(request, text, back, ok=False, status=422)
        return self._done(request, message, back, queue=queue.to_dict())

    # ------------------------------------------------------------------------------------------ jobs
    async def jobs_page(self, request: Request) -> Response:
        if (gate := self._page_gate(request)) is not None:
            return gate
        params = request.query_params
        q = params.get("q", "").strip()
        if q:
            job = await self._call(self.conveyor.get_job, q)
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
        page = await self._call(self.conveyor.list_jobs, **filters, limit=PAGE_SIZE, cursor=cursor)
        stats, queues = await asyncio.gather(self._call(self.conveyor.stats), self._call(self.conveyor.list_queues))
        types = sorted(set(self.conveyor.tasks) | set(stats.counts_by_type))
        active = {k: v for k, v in filters.items() if v}
        others = {k: v for k, v in active.items() if k != "status"}
        tab_urls = {s: "/ui/jobs?" + urlencode({"status": s, **others}) if s else "/ui/jobs?" + urlencode(others)
                    for s in ["", *STATUSES]}
        next_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self._render(
            request,
            "jobs.html",
            jobs=page.jobs,
            next_cursor=page.next_cursor,
            cursor=cursor,
            filters=filters,
            active=active,
            filter_query=urlencode(active),
            tab_urls=tab_urls,
            next_url=next_url,
            older_url="/ui/jobs?" + urlencode({**active, "cursor": page.next_cursor or ""}),
            search=q,
            not_found=bool(q),
            types=types,
            queues=[qi.name for qi in queues],
            counts=_scoped_counts(filters, stats.counts, stats.counts_by_type, queues),
            count_scope=_count_scope(filters),
        )

    async def job_page(self, request: Request, job_id: str) -> Response:
        if (gate := self._page_gate(request)) is not None:
            return gate
        job = await self._call(self.conveyor.get_job, job_id)
        if job is None:
            return self._render(request, "not_found.html", 404, job_id=job_id)
        events = await self._call(self.conveyor.backend.job_events, job_id)
        return self._render(request, "job.html", job=job, events=events)

    async def job_data(self, request: Request, job_id: str) -> Response:
        if (gate := self._data_gate(request)) is not None:
            return gate
        job = await self._call(self.conveyor.get_job, job_id)
        if job is None:
            return _refuse(404, "not_found", f"job {job_id} not found")
        events = await self._call(self.conveyor.backend.job_events, job_id)
        return JSONResponse({"job": job.to_dict(), "events": [e.to_dict() for e in events]})

    def _apply(self, action: str, job_id: str) -> Job | None:
        if action == "cancel":
            return self.conveyor.cancel(job_id)
        if action == "retry":
            return self.conveyor.retry(job_id)
        self.conveyor.delete(job_id)
        return None

    async def job_action(self, request: Request, job_id: str, action: str) -> Response:
        refused, form = await self._action_gate(request)
        if refused is not None:
            return refused
        if action not in ACTIONS:
            return _refuse(404, "not_found", f"unknown action {action!r}")
        back = safe_next(form.get("next"), f"/ui/jobs/{job_id}")
        try:
            job = await self._call(self._apply, action, job_id)
        except JobNotFoundError:
            return self._done(request, f"Job {_short(job_id)} no longer exists.", "/ui/jobs", ok=False, status=404)
        except InvalidStateError as exc:
            return self._done(request, exc.message, back, ok=False)
        if job is None:
            if back.startswith(f"/ui/jobs/{job_id}"):
                back = "/ui/jobs"
            return self._done(request, f"Job {_short(job_id)} deleted.", back, id=job_id, deleted=True)
        verb = {"cancel": "cancelled" if job.status is JobStatus.CANCELLED else "asked to cancel", "retry": "retried"}
        return self._done(request, f"Job {_short(job_id)} {verb[action]}.", back, job=job.to_dict())

    async def bulk(self, request: Request) -> Response:
        refused, form = await self._action_gate(request)
        if refused is not None:
            return refused
        back = safe_next(form.get("next"), "/ui/jobs")
        action = form.get("action", "")
        if action not in ACTIONS:
            return self._done(request, "Choose cancel, retry or delete.", back, ok=False, status=422)
        if form.get("scope") == "filter":
            status = form.get("status") or None
            try:
                chosen = self.conveyor.job_filter(
                    status, form.get("type") or None, form.get("queue") or None, form.get("tag") or None
                )
            except InvalidArgumentsError as exc:
                return self._done(request, exc.message, back, ok=False, status=422)
            ids = await self._call(self.conveyor.backend.select_ids, chosen)
        else:
            body = await request.form()
            ids = [v for v in body.getlist("ids") if isinstance(v, str) and v]
        if not ids:
            return self._done(request, "No jobs selected.", back, ok=False, status=422)
        done = await self._call(self.conveyor.bulk, action, ids)
        skipped = len(ids) - done
        verb = {"cancel": "Cancelled", "retry": "Retried", "delete": "Deleted"}[action]
        message = f"{verb} {done} job{'s' if done != 1 else ''}" + (f"; {skipped} skipped." if skipped else ".")
        return self._done(request, message, back, affected=done, skipped=skipped)

    # ------------------------------------------------------------------------------------------ enqueue
    def _enqueue_context(self, chosen: str | None) -> dict[str, Any]:
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
        if (gate := self._page_gate(request)) is not None:
            return gate
        return self._render(request, "enqueue.html", values={}, error=None, **self._enqueue_context(type))

    async def enqueue(self, request: Request) -> Response:
        refused, form = await self._action_gate(request)
        if refused is not None:
            return refused
        context = self._enqueue_context(form.get("type"))
        task = context["task"]
        try:
            if task is None or form.get("type") != task.name:
                raise InvalidArgumentsError("choose a registered task")
            args = parse_args(context["fields"], form, context["extra_allowed"])
            options = _enqueue_options(form)
            job = await self._call(self.conveyor.enqueue, task.name, args, **options)
        except (ConveyorError, ValueError) as exc:
            message = exc.message if isinstance(exc, ConveyorError) else str(exc)
            return self._render(request, "enqueue.html", 422, values=form, error=message, **context)
        message = f"Enqueued {task.name} as {_short(job.id)}."
        return self._done(request, message, f"/ui/jobs/{job.id}", job=job.to_dict())

    # ------------------------------------------------------------------------------------------ live
    async def events(self, request: Request) -> Response:
        """The live job stream of the pages: the REST API's event hub (one outbox poller per server, shut down
        with it), behind the dashboard's session, since a browser's EventSource cannot send a Bearer header."""
        if (gate := self._data_gate(request)) is not None:
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


def _enqueue_options(form: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if form.get("queue", "").strip():
        options["queue"] = form["queue"].strip()
    for name, kind in (("priority", int), ("max_retries", int), ("delay", float), ("timeout", float)):
        text = form.get(name, "").strip()
        if text:
            try:
                options[name] = kind(text)
            except ValueError:
                raise InvalidArgumentsError(f"{name.replace('_', ' ')} must be a number, got {text!r}") from None
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    if tags:
        options["tags"] = tags
    return options


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
