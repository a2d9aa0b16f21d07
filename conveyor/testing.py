"""Helpers for testing your own tasks: run jobs inline, drain queues, assert what was enqueued.

    from conveyor import Conveyor
    from conveyor.testing import drain, enqueued, assert_enqueued

    app = Conveyor("sqlite:///:memory:")       # or a file under pytest's tmp_path
    signup(app, "ada@example.com")              # your code enqueues
    assert_enqueued(app, "send_welcome", args={"email": "ada@example.com"})
    drain(app)                                  # runs every ready job, in this process
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from conveyor.app import Conveyor
from conveyor.job import Job, JobStatus
from conveyor.worker import Worker

__all__ = ["assert_enqueued", "drain", "enqueued", "run_job_inline"]

MAX_LIST = 1000


def _run(coro: Any) -> Any:
    """Run a coroutine to completion, also from inside a running event loop (e.g. an async test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def drain(app: Conveyor, queues: Sequence[str] | None = None, *, max_jobs: int | None = None) -> int:
    """Run every ready job (and the follow-up jobs they enqueue) in this process; returns how many ran.
    Jobs scheduled for later (delays, retry backoff) are left alone."""

    async def go() -> int:
        worker = Worker(app, concurrency=1, queues=tuple(queues) if queues else None, worker_id="conveyor-testing")
        total = 0
        while max_jobs is None or total < max_jobs:
            ran = await worker.run_once()
            if ran == 0:
                break
            total += ran
        worker.close()
        return total

    return int(_run(go()))


def run_job_inline(app: Conveyor, task_type: str, args: dict[str, Any] | None = None, **options: Any) -> Job:
    """Enqueue a job on a private queue, run it at once in this process, and return it finished."""
    import uuid

    job = app.enqueue(task_type, args, queue=f"inline-{uuid.uuid4().hex[:12]}", **options)
    drain(app, [job.queue])
    return app.require_job(job.id)


def enqueued(
    app: Conveyor, task_type: str | None = None, *, status: JobStatus | str | None = JobStatus.PENDING
) -> list[Job]:
    """Jobs of a type (default: any) in a status (default pending; None: any), oldest first."""
    page = app.list_jobs(type=task_type, status=status, limit=MAX_LIST)
    return list(reversed(page.jobs))


def assert_enqueued(
    app: Conveyor, task_type: str, *, args: dict[str, Any] | None = None, count: int | None = None
) -> list[Job]:
    """Assert that pending jobs of this type exist (with these arguments, this many); returns them."""
    jobs = [j for j in enqueued(app, task_type, status=None) if j.status in (JobStatus.PENDING, JobStatus.SCHEDULED)]
    if args is not None:
        jobs = [j for j in jobs if all(j.args.get(k) == v for k, v in args.items())]
    if count is None and not jobs:
        raise AssertionError(f"no {task_type!r} job enqueued" + (f" with args {args}" if args else ""))
    if count is not None and len(jobs) != count:
        raise AssertionError(f"expected {count} {task_type!r} jobs enqueued, found {len(jobs)}")
    return jobs
