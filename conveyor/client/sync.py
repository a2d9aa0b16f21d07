"""The sync REST client (`Client`)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from typing import Any

import httpx
from httpx_sse import connect_sse

from conveyor.client._common import (
    DEFAULT_URL,
    LIMITS,
    PREFIX,
    ApiError,
    _check,
    _done,
    _dt,
    _headers,
    _job_data,
    _list_params,
    _options,
    _Request,
    job_from_dict,
)
from conveyor.errors import JobNotFoundError
from conveyor.job import Job, JobEvent, JobPage, JobStatus


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
        self.http = httpx.Client(base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport,
                                 limits=LIMITS)

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
