"""The dashboard's actions (POST): cancel, retry and delete jobs one by one or in bulk, pause, resume and limit
queues, and enqueue a job from the form. Each answers JSON to the page's scripts, else a redirect with a message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from conveyor.dashboard._formatting import short
from conveyor.dashboard._forms import parse_args
from conveyor.dashboard._pages import Pages
from conveyor.dashboard._security import safe_next
from conveyor.errors import ConveyorError, InvalidArgumentsError, InvalidStateError, JobNotFoundError
from conveyor.job import JobStatus

if TYPE_CHECKING:
    from conveyor.dashboard._core import Dashboard
    from conveyor.job import Job, QueueInfo

ACTIONS = {"cancel", "retry", "delete"}


class Actions:
    def __init__(self, dashboard: Dashboard, pages: Pages) -> None:
        self.dashboard = dashboard
        self.conveyor = dashboard.conveyor
        self.pages = pages

    def add_routes(self) -> None:
        r = self.dashboard.router
        r.add_api_route("/ui/jobs/bulk", self.bulk, methods=["POST"])
        r.add_api_route("/ui/jobs/{job_id}/{action}", self.job_action, methods=["POST"])
        r.add_api_route("/ui/queues/{name:path}/{action}", self.queue_action, methods=["POST"])
        r.add_api_route("/ui/enqueue", self.enqueue, methods=["POST"])

    # ------------------------------------------------------------------------------------------ queues
    def _set_queue(self, name: str, action: str, form: dict[str, str]) -> tuple[QueueInfo, str] | None:
        if action == "pause":
            return self.conveyor.pause_queue(name), f"Queue {name} paused: no new jobs start."
        if action == "resume":
            return self.conveyor.resume_queue(name), f"Queue {name} resumed."
        if action == "concurrency":
            text = form.get("concurrency", "").strip()
            limit = None if text in ("", "0") else int(text)
            queue = self.conveyor.set_queue(name, concurrency=limit)
            return queue, f"Queue {name}: " + (f"at most {limit} at once." if limit else "no concurrency limit.")
        return None

    async def queue_action(self, request: Request, name: str, action: str) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        back = safe_next(form.get("next"))
        try:
            changed = await d.call(self._set_queue, name, action, form)
        except (ValueError, InvalidArgumentsError) as exc:
            text = exc.message if isinstance(exc, ConveyorError) else "concurrency must be a whole number"
            return d.done(request, text, back, ok=False, status=422)
        if changed is None:
            return d.refuse(404, "not_found", f"unknown queue action {action!r}")
        queue, message = changed
        return d.done(request, message, back, queue=queue.to_dict())

    # ------------------------------------------------------------------------------------------ jobs
    def _apply(self, action: str, job_id: str) -> Job | None:
        if action == "cancel":
            return self.conveyor.cancel(job_id)
        if action == "retry":
            return self.conveyor.retry(job_id)
        self.conveyor.delete(job_id)
        return None

    async def job_action(self, request: Request, job_id: str, action: str) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        if action not in ACTIONS:
            return d.refuse(404, "not_found", f"unknown action {action!r}")
        back = safe_next(form.get("next"), f"/ui/jobs/{job_id}")
        try:
            job = await d.call(self._apply, action, job_id)
        except JobNotFoundError:
            return d.done(request, f"Job {short(job_id)} no longer exists.", "/ui/jobs", ok=False, status=404)
        except InvalidStateError as exc:
            return d.done(request, exc.message, back, ok=False)
        if job is None:
            if back.startswith(f"/ui/jobs/{job_id}"):
                back = "/ui/jobs"
            return d.done(request, f"Job {short(job_id)} deleted.", back, id=job_id, deleted=True)
        verb = {"cancel": "cancelled" if job.status is JobStatus.CANCELLED else "asked to cancel", "retry": "retried"}
        return d.done(request, f"Job {short(job_id)} {verb[action]}.", back, job=job.to_dict())

    async def _bulk_ids(self, request: Request, form: dict[str, str]) -> list[str]:
        """The chosen jobs: those matching the page's filter, or those ticked."""
        if form.get("scope") == "filter":
            chosen = self.conveyor.job_filter(
                form.get("status") or None, form.get("type") or None, form.get("queue") or None,
                form.get("tag") or None,
            )
            return await self.dashboard.call(self.conveyor.backend.select_ids, chosen)
        body = await request.form()
        return [v for v in body.getlist("ids") if isinstance(v, str) and v]

    async def bulk(self, request: Request) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        back = safe_next(form.get("next"), "/ui/jobs")
        action = form.get("action", "")
        if action not in ACTIONS:
            return d.done(request, "Choose cancel, retry or delete.", back, ok=False, status=422)
        try:
            ids = await self._bulk_ids(request, form)
        except InvalidArgumentsError as exc:
            return d.done(request, exc.message, back, ok=False, status=422)
        if not ids:
            return d.done(request, "No jobs selected.", back, ok=False, status=422)
        done = await d.call(self.conveyor.bulk, action, ids)
        skipped = len(ids) - done
        verb = {"cancel": "Cancelled", "retry": "Retried", "delete": "Deleted"}[action]
        message = f"{verb} {done} job{'s' if done != 1 else ''}" + (f"; {skipped} skipped." if skipped else ".")
        return d.done(request, message, back, affected=done, skipped=skipped)

    # ------------------------------------------------------------------------------------------ enqueue
    async def enqueue(self, request: Request) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        context = self.pages.enqueue_context(form.get("type"))
        task = context["task"]
        try:
            if task is None or form.get("type") != task.name:
                raise InvalidArgumentsError("choose a registered task")
            args = parse_args(context["fields"], form, context["extra_allowed"])
            job = await d.call(self.conveyor.enqueue, task.name, args, **_enqueue_options(form))
        except (ConveyorError, ValueError) as exc:
            message = exc.message if isinstance(exc, ConveyorError) else str(exc)
            return d.render(request, "enqueue.html", 422, values=form, error=message, **context)
        return d.done(request, f"Enqueued {task.name} as {short(job.id)}.", f"/ui/jobs/{job.id}", job=job.to_dict())


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
