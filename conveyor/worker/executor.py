"""Runs one claimed job and turns whatever happened into an outcome value."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import Cancelled, ClaimedJob, Completed, Failed, Outcome, Released
from conveyor.context import Cancel, JobContext, Retry
from conveyor.job import json_value
from conveyor.worker.processes import make_pool, run_in_child

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.app import Conveyor
    from conveyor.task import Task

MAX_ERROR_CHARS = 2000
MAX_DETAIL_CHARS = 20000
CANCEL_GRACE_S = 10.0  # a sync task that ignores ctx.cancelled is abandoned after this


@dataclass(eq=False)
class Running:
    """A job in a slot: its context, its asyncio task, and why it is being stopped (if it is)."""

    job: ClaimedJob
    ctx: JobContext
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Outcome] | None = None
    stop_reason: str | None = None  # "cancel" (user), "shutdown" (worker stopping)
    stop_handle: asyncio.TimerHandle | None = field(default=None, repr=False)


class Executor:
    def __init__(
        self,
        app: Conveyor,
        threads: ThreadPoolExecutor,
        clock: Callable[[], float],
        process_count: int = 1,
    ) -> None:
        self.app = app
        self.threads = threads
        self.clock = clock
        self.processes: ProcessPoolExecutor | None = None
        self.process_count = process_count
        # Sync attempts that ended (time-out, cancel) while their thread or process still runs the function: each
        # still holds a thread (or process) of the pool, so the worker keeps its slot until it really ends.
        self.abandoned: set[Future[Any]] = set()
        self.on_abandoned_done: Callable[[], None] | None = None

    def _process_pool(self) -> ProcessPoolExecutor:
        if self.processes is None:
            self.processes = make_pool(self.process_count)
        return self.processes

    def close(self) -> None:
        if self.processes is not None:
            self.processes.shutdown(wait=False, cancel_futures=True)

    async def run(self, running: Running) -> Outcome:
        job = running.job
        task = self.app.tasks.get(job.type)
        if task is None:
            return Failed(job.id, job.lease, f"unknown task type {job.type!r}: no task of this worker registers it")
        try:
            result = await self._call(task, running)
        except asyncio.CancelledError:
            if running.stop_reason == "cancel":
                return Cancelled(job.id, job.lease, "cancelled while running")
            if running.stop_reason == "shutdown":
                return Released(job.id, job.lease)
            raise
        except Cancel as exc:
            return Cancelled(job.id, job.lease, exc.reason)
        except Retry as exc:
            retry_at = task.retry_policy.retry_at(job.retries_used + 1, self.clock(), after=exc.after)
            return Failed(job.id, job.lease, exc.reason, None, retry_at)
        except TimeoutError:
            running.ctx._request_cancel()
            limit = self._timeout(task, job)
            return self._failure(task, job, f"TimeoutError: attempt timed out after {limit:g}s", None)
        except Exception as exc:  # noqa: BLE001 - any task error is a failed attempt
            detail = traceback.format_exc()[-MAX_DETAIL_CHARS:]
            return self._failure(task, job, f"{type(exc).__name__}: {exc}", detail)
        try:
            return Completed(job.id, job.lease, json_value(result, "the task's result"))
        except ValueError as exc:
            return Failed(job.id, job.lease, str(exc))

    @staticmethod
    def _timeout(task: Task, job: ClaimedJob) -> float | None:
        return job.timeout if job.timeout is not None else task.timeout

    async def _call(self, task: Task, running: Running) -> Any:
        job = running.job
        kwargs = task.parse(job.args)
        args = (running.ctx,) if task.takes_context else ()
        limit = self._timeout(task, job)
        if task.is_async:
            if limit is None:
                return await task.fn(*args, **kwargs)
            async with asyncio.timeout(limit):
                return await task.fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        work: Future[Any]
        if task.process:
            # the child has no database: its parents' results (`ctx.parent_results`) travel with the call
            read = running.ctx.app.backend.parent_results
            parents = await loop.run_in_executor(None, read, job.id) if task.takes_context else {}
            identity = (job.id, job.type, job.attempt, parents)
            call = functools.partial(
                run_in_child, task.fn.__module__, task.fn.__qualname__, identity, task.takes_context, kwargs
            )
            work = self._process_pool().submit(call)
        else:
            work = self.threads.submit(functools.partial(contextvars.copy_context().run, task.fn, *args, **kwargs))
        # A thread cannot be interrupted: on time-out or cancel the attempt ends now and `ctx.cancelled` tells the
        # function to stop; its thread finishes in the background and its result is discarded.
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(work)), limit)
        finally:
            if not work.done():
                self._abandon(work, loop)

    def cancel(self, running: Running) -> bool:
        """Stop a job at a user's request: an async task is interrupted at once, a sync one sees `ctx.cancelled` and
        is abandoned after CANCEL_GRACE_S. False if the job is already being stopped."""
        if running.stop_reason is not None or running.task is None:
            return False
        running.stop_reason = "cancel"
        running.ctx._request_cancel()
        task = self.app.tasks.get(running.job.type)
        if task is not None and task.is_async:
            running.task.cancel()
        else:
            running.stop_handle = asyncio.get_running_loop().call_later(CANCEL_GRACE_S, running.task.cancel)
        return True

    def _abandon(self, work: Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.abandoned.add(work)

        def done(finished: Future[Any]) -> None:  # in the thread that ran the function
            self.abandoned.discard(finished)
            if self.on_abandoned_done is not None:
                with contextlib.suppress(RuntimeError):  # that loop may be closed by now (run_once in asyncio.run)
                    loop.call_soon_threadsafe(self.on_abandoned_done)

        work.add_done_callback(done)

    def _failure(self, task: Task, job: ClaimedJob, error: str, detail: str | None) -> Failed:
        retry_at = task.retry_policy.retry_at(job.retries_used + 1, self.clock())
        return Failed(job.id, job.lease, error[:MAX_ERROR_CHARS], detail, retry_at)


def settled(running: Running, task: asyncio.Task[Outcome]) -> Outcome:
    """What a job's ended asyncio task comes to: its outcome, or, if the worker itself cancelled or broke it, the job
    released for another attempt."""
    job = running.job
    if task.cancelled():
        return Released(job.id, job.lease, "interrupted by worker shutdown")
    if task.exception() is not None:
        return Released(job.id, job.lease, f"worker error: {task.exception()!r}")
    return task.result()
