"""A Python client of the REST API, for producers that do not touch the database: sync `Client`, async `AsyncClient`.

>>> from conveyor.client import Client
>>> with Client("http://127.0.0.1:8000", token="...") as conveyor:     # token default: CONVEYOR_API_TOKEN
...     job = conveyor.enqueue("generate_report", {"contract_name": "A"}, priority=5)
...     done = conveyor.wait(job.id, timeout=300)                       # SSE, falling back to polling

Errors are the core's: `JobNotFoundError` (404), `InvalidStateError` (409), `UnknownTaskError` (422 `unknown_task`),
`InvalidArgumentsError` (400, 413, other 422s),
`JobFailed` and `TimeoutError` from `wait`, and `ApiError` for anything else (401, 5xx), all `ConveyorError`s.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

from conveyor.errors import (
    ConveyorError,
    InvalidArgumentsError,
    InvalidStateError,
    JobFailed,
    JobNotFoundError,
    UnknownTaskError,
)
from conveyor.job import TERMINAL_STATUSES, Job, JobEvent, JobPage, JobStatus

__all__ = ["ApiError", "AsyncClient", "Client", "job_from_dict"]

DEFAULT_URL = "http://127.0.0.1:8000"
PREFIX = "/api/v1"
_OPTIONS = ("queue", "priority", "max_retries", "timeout", "delay", "run_at", "unique_key", "tags", "metadata",
            "webhook_url")


class ApiError(ConveyorError):
    """The API answered with an error."""

    code = "api_error"

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"{status} {code}: {message}")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_from_dict(data: dict[str, Any]) -> Job:
    """A `Job` from its JSON object (SPEC section 4)."""
    return Job(
        id=data["id"],
        type=data["type"],
        queue=data["queue"],
        status=JobStatus(data["status"]),
        priority=data["priority"],
        args=data["args"],
        result=data.get("result"),
        error=data.get("error"),
        error_detail=data.get("error_detail"),
        progress=data.get("progress", 0),
        progress_info=data.get("progress_info"),
        attempts=data.get("attempts", 0),
        max_retries=data["max_retries"],
        timeout=data.get("timeout"),
        run_at=_dt(data["run_at"]),  # type: ignore[arg-type]
        tags=data.get("tags") or [],
        metadata=data.get("metadata") or {},
        unique_key=data.get("unique_key"),
        created_at=_dt(data["created_at"]),  # type: ignore[arg-type]
        updated_at=_dt(data["updated_at"]),  # type: ignore[arg-type]
        started_at=_dt(data.get("started_at")),
        completed_at=_dt(data.get("completed_at")),
        worker_id=data.get("worker_id"),
        cancel_requested=bool(data.get("cancel_requested", False)),
    )


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: Any = None
    job_id: str | None = None  # for a JobNotFoundError on 404


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise InvalidArgumentsError(f"unknown enqueue options: {', '.join(sorted(unknown))}")
    out = {k: v for k, v in options.items() if v is not None}
    if isinstance(out.get("run_at"), datetime):
        out["run_at"] = out["run_at"].isoformat()
    return out


def _list_params(
    status: str | Sequence[str] | None, type_: str | None, queue: str | None, tag: str | None, limit: int,
    cursor: str | None,
) -> tuple[tuple[str, str], ...]:
    params = [("limit", str(limit))]
    if status is not None:
        params += [("status", str(s)) for s in ([status] if isinstance(status, str) else status)]
    params += [(k, v) for k, v in (("type", type_), ("queue", queue), ("tag", tag), ("cursor", cursor)) if v]
    return tuple(params)


def _check(request: _Request, response: httpx.Response) -> Any:
    if response.status_code < 400:
        return None if response.status_code == 204 or not response.content else response.json()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason_phrase
    status = response.status_code
    if status == 404 and request.job_id is not None:
        raise JobNotFoundError(request.job_id)
    if status == 409:
        raise InvalidStateError(message)
    if code == "unknown_task":  # the same exception as the Python API's for the same mistake
        raise UnknownTaskError.from_message(message)
    if status in (400, 413, 422):
        raise InvalidArgumentsError(message)
    raise ApiError(status, code, message)


def _done(job: Job) -> Job | None:
    if job.status is JobStatus.COMPLETED:
        return job
    if job.status in TERMINAL_STATUSES:
        raise JobFailed(job)
    return None


def _job_data(event: ServerSentEvent) -> dict[str, Any] | None:
    """The job object of an `event: job` frame (other events: None)."""
    return event.json() if event.event == "job" and event.data else None


def _headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("CONVEYOR_API_TOKEN") or None
    return {"Authorization": f"Bearer {token}"} if token else {}


class Client:
    """Synchronous client of a Conveyor server."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, request: _Request) -> Any:
        try:
            response = self.http.request(
                request.method, PREFIX + request.path, params=request.params, json=request.body
            )
        except httpx.HTTPError as exc:
            raise ApiError(0, "connection_error", str(exc)) from exc
        return _check(request, response)

    def enqueue(self, task_type: str, args: dict[str, Any] | None = None, **options: Any) -> Job:
        body = {"type": task_type, "args": args or {}, **_options(options)}
        return job_from_dict(self._call(_Request("POST", "/jobs", body=body)))

    def enqueue_many(self, task_type: str, args_list: Sequence[dict[str, Any]], **options: Any) -> list[Job]:
        opts = _options(options)
        body = {"jobs": [{"type": task_type, "args": args, **opts} for args in args_list]}
        return [job_from_dict(j) for j in self._call(_Request("POST", "/jobs/batch", body=body))["jobs"]]

    def get(self, job_id: str) -> Job | None:
        try:
            return job_from_dict(self._call(_Request("GET", f"/jobs/{job_id}", job_id=job_id)))
        except JobNotFoundError:
            return None

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,  # noqa: A002 - the API's filter name
        queue: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        params = _list_params(status, type, queue, tag, limit, cursor)
        page = self._call(_Request("GET", "/jobs", params=params))
        return JobPage([job_from_dict(j) for j in page["jobs"]], page["next_cursor"])

    def events(self, job_id: str) -> builtins.list[JobEvent]:
        """The job's history (`id` is 0: the API does not expose event ids)."""
        body = self._call(_Request("GET", f"/jobs/{job_id}/events", job_id=job_id))
        return [
            JobEvent(0, job_id, _dt(e["at"]), JobStatus(e["from_status"]) if e["from_status"] else None,  # type: ignore[arg-type]
                     JobStatus(e["to_status"]), e["worker_id"], e["message"])
            for e in body["events"]
        ]

    def cancel(self, job_id: str) -> Job:
        return job_from_dict(self._call(_Request("POST", f"/jobs/{job_id}/cancel", job_id=job_id)))

    def retry(self, job_id: str) -> Job:
        return job_from_dict(self._call(_Request("POST", f"/jobs/{job_id}/retry", job_id=job_id)))

    def delete(self, job_id: str) -> None:
        self._call(_Request("DELETE", f"/jobs/{job_id}", job_id=job_id))

    def wait(self, job_id: str, timeout: float | None = None, poll_interval: float = 1.0) -> Job:
        """Block until the job ends: the completed job, `JobFailed` if it failed or was cancelled, `TimeoutError`
        when `timeout` seconds pass first. Follows the job's live events; polls if the stream is unavailable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        use_sse = True
        while True:
            if use_sse:
                try:
                    found = self._wait_sse(job_id, deadline)
                    if found is not None:
                        return found
                except (httpx.HTTPError, ApiError, ValueError):
                    use_sse = False
            else:
                job = self.get(job_id)
                if job is None:
                    raise JobNotFoundError(job_id)
                if (finished := _done(job)) is not None:
                    return finished
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id} has not ended after {timeout}s")
            if not use_sse:
                time.sleep(poll_interval if left is None else min(poll_interval, left))

    def _wait_sse(self, job_id: str, deadline: float | None) -> Job | None:
        """Follow the job's events until it ends (the job), or the stream or the time runs out (None)."""
        left = None if deadline is None else max(0.01, deadline - time.monotonic())
        with connect_sse(
            self.http, "GET", f"{PREFIX}/events", params={"job_id": job_id}, timeout=httpx.Timeout(30.0, read=left)
        ) as source:
            response = source.response
            if response.status_code != 200:
                response.read()
                _check(_Request("GET", "/events"), response)
                raise ApiError(response.status_code, "no_stream", "the event stream is unavailable")
            job = self.get(job_id)  # after subscribing, so no change between the two is missed
            if job is None:
                raise JobNotFoundError(job_id)
            if (finished := _done(job)) is not None:
                return finished
            try:
                for event in source.iter_sse():
                    data = _job_data(event)
                    if data is not None and (finished := _done(job_from_dict(data))) is not None:
                        return finished
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
            except httpx.ReadTimeout:
                return None
        return None


class AsyncClient:
    """Asynchronous client of a Conveyor server; the same methods as `Client`, as coroutines."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, request: _Request) -> Any:
        try:
            response = await self.http.request(
                request.method, PREFIX + request.path, params=request.params, json=request.body
            )
        except httpx.HTTPError as exc:
            raise ApiError(0, "connection_error", str(exc)) from exc
        return _check(request, response)

    async def enqueue(self, task_type: str, args: dict[str, Any] | None = None, **options: Any) -> Job:
        body = {"type": task_type, "args": args or {}, **_options(options)}
        return job_from_dict(await self._call(_Request("POST", "/jobs", body=body)))

    async def enqueue_many(self, task_type: str, args_list: Sequence[dict[str, Any]], **options: Any) -> list[Job]:
        opts = _options(options)
        body = {"jobs": [{"type": task_type, "args": args, **opts} for args in args_list]}
        return [job_from_dict(j) for j in (await self._call(_Request("POST", "/jobs/batch", body=body)))["jobs"]]

    async def get(self, job_id: str) -> Job | None:
        try:
            return job_from_dict(await self._call(_Request("GET", f"/jobs/{job_id}", job_id=job_id)))
        except JobNotFoundError:
            return None

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        type: str | None = None,  # noqa: A002 - the API's filter name
        queue: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        params = _list_params(status, type, queue, tag, limit, cursor)
        page = await self._call(_Request("GET", "/jobs", params=params))
        return JobPage([job_from_dict(j) for j in page["jobs"]], page["next_cursor"])

    async def cancel(self, job_id: str) -> Job:
        return job_from_dict(await self._call(_Request("POST", f"/jobs/{job_id}/cancel", job_id=job_id)))

    async def retry(self, job_id: str) -> Job:
        return job_from_dict(await self._call(_Request("POST", f"/jobs/{job_id}/retry", job_id=job_id)))

    async def delete(self, job_id: str) -> None:
        await self._call(_Request("DELETE", f"/jobs/{job_id}", job_id=job_id))

    async def wait(self, job_id: str, timeout: float | None = None, poll_interval: float = 1.0) -> Job:
        """As `Client.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        use_sse = True
        while True:
            if use_sse:
                try:
                    found = await self._wait_sse(job_id, deadline)
                    if found is not None:
                        return found
                except (httpx.HTTPError, ApiError, ValueError):
                    use_sse = False
            else:
                job = await self.get(job_id)
                if job is None:
                    raise JobNotFoundError(job_id)
                if (finished := _done(job)) is not None:
                    return finished
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id} has not ended after {timeout}s")
            if not use_sse:
                await asyncio.sleep(poll_interval if left is None else min(poll_interval, left))

    async def _wait_sse(self, job_id: str, deadline: float | None) -> Job | None:
        left = None if deadline is None else max(0.01, deadline - time.monotonic())
        async with aconnect_sse(
            self.http, "GET", f"{PREFIX}/events", params={"job_id": job_id}, timeout=httpx.Timeout(30.0, read=left)
        ) as source:
            response = source.response
            if response.status_code != 200:
                await response.aread()
                _check(_Request("GET", "/events"), response)
                raise ApiError(response.status_code, "no_stream", "the event stream is unavailable")
            job = await self.get(job_id)
            if job is None:
                raise JobNotFoundError(job_id)
            if (finished := _done(job)) is not None:
                return finished
            try:
                async for event in source.aiter_sse():
                    data = _job_data(event)
                    if data is not None and (finished := _done(job_from_dict(data))) is not None:
                        return finished
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
            except httpx.ReadTimeout:
                return None
        return None

