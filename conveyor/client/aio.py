"""The async REST client (`AsyncClient`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from conveyor.client._common import (
    DEFAULT_URL,
    LIMITS,
    PREFIX,
    ApiError,
    _check,
    _done,
    _headers,
    _job_data,
    _list_params,
    _options,
    _Request,
    job_from_dict,
)
from conveyor.errors import JobNotFoundError
from conveyor.job import Job, JobPage


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
            base_url=base_url, headers=_headers(token), timeout=timeout, transport=transport, limits=LIMITS
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
