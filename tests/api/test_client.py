"""`conveyor.client` against the real server: every method, errors, token, and wait (SSE and polling)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from conveyor.client import ApiError, AsyncClient, Client
from conveyor.errors import InvalidArgumentsError, InvalidStateError, JobFailed, JobNotFoundError, UnknownTaskError
from conveyor.job import Job, JobStatus
from conveyor.settings import Settings
from tests.api.conftest import RunningServer


def _run_worker_soon(server: RunningServer, delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        threading.Event().wait(delay)
        server.conveyor.run_worker(concurrency=2, burst=True)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sync_client_methods(server: RunningServer) -> None:
    with Client(server.url) as client:
        job = client.enqueue("demo.echo", {"a": 1}, priority=4, tags=["c"], metadata={"m": 1})
        assert job.status is JobStatus.PENDING and job.priority == 4 and job.tags == ["c"]
        many = client.enqueue_many("demo.echo", [{"i": 1}, {"i": 2}], queue="q")
        assert [j.args for j in many] == [{"i": 1}, {"i": 2}] and {j.queue for j in many} == {"q"}
        got = client.get(job.id)
        assert got is not None and got.id == job.id and got.metadata == {"m": 1}
        assert client.get("missing") is None
        page = client.list(queue="q", limit=1)
        assert len(page.jobs) == 1 and page.next_cursor is not None
        assert len(client.list(queue="q", cursor=page.next_cursor).jobs) == 1
        assert len(client.list(status=["pending"]).jobs) == 3
        assert client.cancel(job.id).status is JobStatus.CANCELLED
        with pytest.raises(InvalidStateError):
            client.cancel(job.id)
        assert client.retry(job.id).status is JobStatus.PENDING
        assert [e.to_status for e in client.events(job.id)] == [
            JobStatus.PENDING, JobStatus.CANCELLED, JobStatus.PENDING
        ]
        client.cancel(job.id)
        client.delete(job.id)
        assert client.get(job.id) is None
        with pytest.raises(JobNotFoundError):
            client.cancel(job.id)
        with pytest.raises(UnknownTaskError):  # as from the Python API
            client.enqueue("no.such.task")
        with pytest.raises(InvalidArgumentsError):
            client.enqueue("demo.echo", nonsense=1)
        hooked = client.enqueue("demo.echo", {}, webhook_url="https://example.com/hook")
        assert hooked.webhook_url == "https://example.com/hook"
        assert (client.get(hooked.id) or job).webhook_url == "https://example.com/hook"


def test_sync_wait_with_sse(server: RunningServer) -> None:
    with Client(server.url) as client:
        job = client.enqueue("demo.sleep", {"seconds": 0.2, "steps": 2})
        worker = _run_worker_soon(server)
        done = client.wait(job.id, timeout=60)
        worker.join()
        assert done.status is JobStatus.COMPLETED and done.result == {"slept": 0.2}
        failing = client.enqueue("demo.fail", {"times": -1}, max_retries=0)
        server.conveyor.run_worker(concurrency=1, burst=True)
        with pytest.raises(JobFailed) as info:
            client.wait(failing.id, timeout=30)
        assert info.value.job.status is JobStatus.FAILED
        pending = client.enqueue("demo.echo", delay=3600)
        with pytest.raises(TimeoutError):
            client.wait(pending.id, timeout=0.5)
        with pytest.raises(JobNotFoundError):
            client.wait("missing", timeout=5)


def test_wait_falls_back_to_polling(server: RunningServer) -> None:
    class NoStream(Client):
        def _wait_sse(self, job_id: str, deadline: float | None) -> None:
            raise ApiError(404, "not_found", "no event stream here")

    with NoStream(server.url) as client:
        job = client.enqueue("demo.echo", {"p": 1})
        worker = _run_worker_soon(server)
        done = client.wait(job.id, timeout=60, poll_interval=0.1)
        worker.join()
        assert done.status is JobStatus.COMPLETED and done.result == {"p": 1}


def test_token(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(Settings(api_token="tok", lease_s=2.0, poll_interval_s=0.1))
    with Client(server.url) as anonymous, pytest.raises(ApiError) as info:
        anonymous.list()
    assert info.value.status == 401
    with Client(server.url, token="tok") as client:
        job = client.enqueue("demo.echo")
        worker = _run_worker_soon(server)
        assert client.wait(job.id, timeout=60).status is JobStatus.COMPLETED
        worker.join()


def test_async_client(server: RunningServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            job = await client.enqueue("demo.echo", {"x": 1})
            [a, b] = await client.enqueue_many("demo.echo", [{"y": 1}, {"y": 2}])
            assert (await client.get(job.id)) is not None and (await client.get("nope")) is None
            assert len((await client.list(type="demo.echo")).jobs) == 3
            assert (await client.cancel(a.id)).status is JobStatus.CANCELLED
            assert (await client.retry(a.id)).status is JobStatus.PENDING
            await client.cancel(b.id)
            await client.delete(b.id)
            worker = _run_worker_soon(server)
            done = await client.wait(job.id, timeout=60)
            assert done.result == {"x": 1}
            await asyncio.to_thread(worker.join)
            with pytest.raises(JobNotFoundError):
                await client.retry("nope")

    asyncio.run(scenario())


def test_wait_reads_the_end_from_the_event_stream_itself(server: RunningServer) -> None:
    """No polling fallback here: the stream alone must bring the job's end, to the sync and the async client."""
    with Client(server.url) as client:
        job = client.enqueue("demo.sleep", {"seconds": 0.2, "steps": 2})
        worker = _run_worker_soon(server)
        done = client._wait_sse(job.id, time.monotonic() + 60)
        worker.join()
        assert done is not None and done.status is JobStatus.COMPLETED and done.progress == 100

    async def scenario() -> Job | None:
        async with AsyncClient(server.url) as aclient:
            job = await aclient.enqueue("demo.sleep", {"seconds": 0.2, "steps": 2})
            worker = _run_worker_soon(server)
            try:
                return await aclient._wait_sse(job.id, time.monotonic() + 60)
            finally:
                await asyncio.to_thread(worker.join)

    finished = asyncio.run(scenario())
    assert finished is not None and finished.status is JobStatus.COMPLETED
