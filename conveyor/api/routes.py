"""The `/api/v1` routes of SPEC section 4, as one router users can mount in their own FastAPI app.

Endpoints that call the facade are plain `def`s: FastAPI runs them in its thread pool, so a database call never
blocks the event loop. Jobs are answered with `Job.to_dict()` directly (the response models document the shape).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from conveyor.api.errors import ApiError, ErrorRoute
from conveyor.api.events import EventFilter, EventHub, EventStreamResponse
from conveyor.api.groups import add_group_routes
from conveyor.api.models import ERRORS as ERRORS_DOC
from conveyor.api.models import (
    Affected,
    BatchRequest,
    BulkRequest,
    ClaimOut,
    ClaimRequest,
    CompleteRequest,
    EnqueueRequest,
    EventList,
    FailRequest,
    HeartbeatOut,
    HeartbeatRequest,
    JobList,
    JobOut,
    JobsOut,
    QueueList,
    QueueOut,
    QueuePatch,
    StatsOut,
    WorkerList,
)
from conveyor.api.protocol import WorkerProtocol
from conveyor.api.webhooks import create_webhook_router
from conveyor.errors import InvalidArgumentsError, InvalidStateError
from conveyor.job import JobStatus
from conveyor.job_controls import MAX_LIST_LIMIT
from conveyor.settings import parse_duration

if TYPE_CHECKING:
    from conveyor.app import Conveyor

JobId = Annotated[str, Path(min_length=1, max_length=200, description="the job's id")]
QueueName = Annotated[str, Path(min_length=1, max_length=200)]
FilterText = Annotated[str | None, Query(min_length=1, max_length=200)]


def _job_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def create_router(conveyor: Conveyor, *, hub: EventHub | None = None) -> APIRouter:
    """The API's routes, relative to `/api/v1`: mount with `app.include_router(router, prefix="/api/v1")`.

    Errors come out in the SPEC's shape wherever the router is mounted. Authentication is the app's concern
    (`create_app` adds it); an app that mounts this router behind its own auth needs nothing more.
    """
    router = APIRouter(route_class=ErrorRoute, responses=ERRORS_DOC)
    events = hub or EventHub(conveyor)
    protocol = WorkerProtocol(conveyor)
    jobs_tag: list[str | Any] = ["jobs"]

    # ------------------------------------------------------------------------------------------ jobs
    @router.post("/jobs", status_code=201, response_model=JobOut, tags=jobs_tag, summary="Enqueue a job")
    def enqueue(body: EnqueueRequest) -> Response:
        """201 and the job; 200 and the existing job when an open job holds the same `unique_key`."""
        job = conveyor.enqueue(body.type, body.args, **body.given())
        return _job_response(job.to_dict(), 200 if job.existing else 201)

    @router.post("/jobs/batch", status_code=201, response_model=JobsOut, tags=jobs_tag, summary="Enqueue many")
    def enqueue_batch(body: BatchRequest) -> Response:
        """All or nothing: one bad job answers 422 naming its index, and nothing is stored."""
        jobs = conveyor.enqueue_batch(body.jobs)
        return JSONResponse({"jobs": [j.to_dict() for j in jobs]}, status_code=201)

    @router.get("/jobs", response_model=JobList, tags=jobs_tag, summary="List jobs, newest first")
    def list_jobs(
        status: Annotated[list[JobStatus] | None, Query(description="repeatable")] = None,
        type: FilterText = None,  # noqa: A002 - the SPEC's filter name
        queue: FilterText = None,
        tag: FilterText = None,
        limit: Annotated[int, Query(description=f"clamped to 1..{MAX_LIST_LIMIT}")] = 50,
        cursor: Annotated[str | None, Query(max_length=100, pattern=r"^[0-9A-Za-z_\-:.]+$")] = None,
    ) -> Response:
        try:
            page = conveyor.list_jobs(status=status, type=type, queue=queue, tag=tag, limit=limit, cursor=cursor)
        except InvalidStateError as exc:  # a cursor the backend cannot read
            raise InvalidArgumentsError(exc.message) from None
        return JSONResponse({"jobs": [j.to_dict() for j in page.jobs], "next_cursor": page.next_cursor})

    @router.get("/jobs/{job_id}", response_model=JobOut, tags=jobs_tag, summary="One job")
    def get_job(job_id: JobId) -> Response:
        return _job_response(conveyor.require_job(job_id).to_dict())

    @router.get("/jobs/{job_id}/events", response_model=EventList, tags=jobs_tag, summary="A job's history")
    def job_events(job_id: JobId) -> Response:
        events = [
            {k: v for k, v in e.to_dict().items() if k != "id"} for e in conveyor.job_events(job_id)
        ]
        return JSONResponse({"events": events})

    @router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=jobs_tag, summary="Cancel a job")
    def cancel(job_id: JobId) -> Response:
        """A waiting job ends `cancelled` at once; a running one is asked to stop. 409 on a finished job."""
        return _job_response(conveyor.cancel(job_id).to_dict())

    @router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=jobs_tag, summary="Retry a job")
    def retry(job_id: JobId) -> Response:
        """A failed or cancelled job becomes pending with a fresh retry budget; 409 otherwise."""
        return _job_response(conveyor.retry(job_id).to_dict())

    @router.delete("/jobs/{job_id}", status_code=204, tags=jobs_tag, summary="Delete a job")
    def delete(job_id: JobId) -> Response:
        """409 if it is processing (cancel it first)."""
        conveyor.delete(job_id)
        return Response(status_code=204)

    @router.post("/jobs/bulk", response_model=Affected, tags=jobs_tag, summary="Act on many jobs")
    def bulk(body: BulkRequest) -> Response:
        if (body.ids is None) == (body.filter is None):
            raise InvalidArgumentsError("give either ids or filter")
        if body.filter is None:
            return JSONResponse({"affected": conveyor.bulk(body.action, body.ids)})
        f = body.filter
        older = f.older_than
        older_s = parse_duration(older) if isinstance(older, str) else older
        affected = conveyor.bulk(
            body.action, status=f.status, type=f.type, queue=f.queue, tag=f.tag, older_than_s=older_s
        )
        return JSONResponse({"affected": affected})

    # ------------------------------------------------------------------------------------------ queues
    @router.get("/queues", response_model=QueueList, tags=["queues"], summary="Queues with their counts")
    def list_queues() -> Response:
        return JSONResponse({"queues": [q.to_dict() for q in conveyor.list_queues()]})

    @router.patch("/queues/{name}", response_model=QueueOut, tags=["queues"], summary="Change a queue")
    def patch_queue(name: QueueName, body: QueuePatch) -> Response:
        changes = {k: getattr(body, k) for k in body.model_fields_set}
        if changes.get("paused", False) is None:
            raise InvalidArgumentsError("paused must be true or false")
        return JSONResponse(conveyor.set_queue(name, **changes).to_dict())

    @router.post("/queues/{name}/pause", response_model=QueueOut, tags=["queues"], summary="Stop claiming")
    def pause_queue(name: QueueName) -> Response:
        return JSONResponse(conveyor.pause_queue(name).to_dict())

    @router.post("/queues/{name}/resume", response_model=QueueOut, tags=["queues"], summary="Start claiming")
    def resume_queue(name: QueueName) -> Response:
        return JSONResponse(conveyor.resume_queue(name).to_dict())

    add_group_routes(router, conveyor)

    # ------------------------------------------------------------------------------------------ observing
    @router.get("/stats", response_model=StatsOut, tags=["observing"], summary="Counts, durations, throughput")
    def stats() -> Response:
        return JSONResponse(conveyor.stats().to_dict())

    @router.get("/workers", response_model=WorkerList, tags=["observing"], summary="Live workers")
    def list_workers() -> Response:
        return JSONResponse({"workers": [w.to_dict() for w in conveyor.list_workers()]})

    @router.get(
        "/events",
        tags=["observing"],
        summary="Live job changes (Server-Sent Events)",
        response_class=EventStreamResponse,
        status_code=200,
        responses={200: {"content": {"text/event-stream": {}}, "description": "`event: job` frames"}},
    )
    async def stream_events(
        job_id: FilterText = None,
        type: FilterText = None,  # noqa: A002 - the SPEC's filter name
        queue: FilterText = None,
        tag: FilterText = None,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=30, include_in_schema=False)
        ] = None,
        last_event_id_q: Annotated[
            int | None, Query(alias="last_event_id", ge=0, description="resume after this id (or Last-Event-ID)")
        ] = None,
    ) -> Response:
        """Every state change and progress write of the matching jobs as `event: job`, with a system-wide
        increasing `id:` and the job as `data:`. Reconnect with `Last-Event-ID` to get what was missed."""
        after = last_event_id_q
        if last_event_id is not None and last_event_id.strip():
            if not last_event_id.strip().isdigit():
                raise ApiError(422, "Last-Event-ID must be a non-negative integer")
            after = int(last_event_id.strip())
        flt = EventFilter(job_id=job_id, type=type, queue=queue, tag=tag)
        sub, position = await events.subscribe(flt)
        try:
            backlog = await events.replay(after, position, flt) if after is not None else []
        except BaseException:
            events.unsubscribe(sub)
            raise
        return EventStreamResponse(events, sub, backlog)

    # ------------------------------------------------------------------------------------------ HTTP workers
    @router.post("/workers/claim", response_model=ClaimOut, tags=["http workers"], summary="Claim jobs")
    def claim(body: ClaimRequest, request: Request) -> Response:
        """Registers (or beats) the worker and claims up to `limit` ready jobs under a lease of `lease_s`."""
        host = body.host or (request.client.host if request.client else socket.gethostname())
        return JSONResponse(protocol.claim(body, host))

    @router.post(
        "/jobs/{job_id}/heartbeat", response_model=HeartbeatOut, tags=["http workers"], summary="Renew a lease"
    )
    def heartbeat(job_id: JobId, body: HeartbeatRequest, request: Request) -> Response:
        """Renews the lease (and the worker's other leases), records progress; 409 if the lease was lost."""
        host = request.client.host if request.client else socket.gethostname()
        return JSONResponse(protocol.heartbeat(job_id, body, host))

    @router.post("/jobs/{job_id}/complete", response_model=JobOut, tags=["http workers"], summary="Complete")
    def complete(job_id: JobId, body: CompleteRequest) -> Response:
        """Records the result; 409 if the lease was lost (expired and the job was rescued or reclaimed)."""
        return _job_response(protocol.complete(job_id, body))

    @router.post("/jobs/{job_id}/fail", response_model=JobOut, tags=["http workers"], summary="Fail an attempt")
    def fail(job_id: JobId, body: FailRequest) -> Response:
        """Records the failure; with `retry` and retries left the job is scheduled again after a backoff."""
        return _job_response(protocol.fail(job_id, body))

    router.include_router(create_webhook_router(conveyor))
    return router

