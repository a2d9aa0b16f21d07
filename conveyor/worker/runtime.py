"""The worker: a fetcher that claims jobs into free slots (`slots`), an executor per job (`executor`), a completer
that writes outcomes and progress in batches, a heartbeat that renews leases and picks up cancel requests, and
maintenance (`maintenance`: rescue, prune).

All backend calls run in one dedicated thread (`conveyor.blocking`), so the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import (
    Cancelled,
    ClaimedJob,
    ClaimParams,
    ClaimResult,
    Outcome,
    ProgressUpdate,
    Released,
)
from conveyor.blocking import BlockingCalls
from conveyor.context import JobContext
from conveyor.errors import BackendError
from conveyor.schedules.service import Scheduler
from conveyor.webhooks.worker import sender_for
from conveyor.worker.executor import Executor, Running, settled
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.services import WorkerServices
from conveyor.worker.slots import Slots

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")

IDLE_CHECK_S = 0.002  # how often an idle worker asks the database whether anything changed (a cheap read)
PROGRESS_FLUSH_S = 0.2
CANCEL_CHECK_S = 0.25
ERROR_PAUSE_S = 1.0
STARTUP_PAUSE_MAX_S = 10.0


class Worker(WorkerServices):
    def __init__(
        self,
        app: Conveyor,
        *,
        concurrency: int | None = None,
        queues: tuple[str, ...] | None = None,
        burst: bool = False,
        lease_s: float | None = None,
        shutdown_grace_s: float | None = None,
        poll_interval_s: float | None = None,
        worker_id: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # validated like the settings: 0 slots or a negative lease is a ConfigError, not silently the default
        settings = app.settings.with_changes(
            concurrency=concurrency, lease_s=lease_s, shutdown_grace_s=shutdown_grace_s, poll_interval_s=poll_interval_s
        )
        self.app = app
        self.backend = app.backend
        self.concurrency = settings.concurrency
        self.queues = queues if queues is not None else settings.queues
        self.types = tuple(sorted(app.tasks))  # it claims only jobs it can run: others wait for a worker that can
        self.burst = burst
        self.lease_s = settings.lease_s
        self.grace_s = settings.shutdown_grace_s
        self.poll_interval_s = settings.poll_interval_s
        self.clock = clock or app.clock
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = worker_id or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.started_at = self.clock()
        self.processed = 0
        self.lost: list[str] = []
        self._outcomes: list[Outcome] = []
        self._progress: dict[str, ProgressUpdate] = {}
        # the last progress of jobs that ended before it was written: it goes with their outcome, written first
        self._final_progress: list[ProgressUpdate] = []
        self._calls = BlockingCalls("conveyor-db")
        self._task_threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="conveyor-task")
        self._executor = Executor(app, self._task_threads, self.clock, min(self.concurrency, os.cpu_count() or 1))
        self._executor.on_abandoned_done = self._slot_freed
        self._slots = Slots(self.concurrency, lambda: len(self._executor.abandoned))
        self._running = self._slots.running
        self._maintenance = Maintenance(self.backend, self._calls, self.id, app.settings.retention_days * 86400)
        self._stopping = False
        self._failure: BaseException | None = None
        self._wake: asyncio.Event | None = None
        self._hard_stop: asyncio.Event | None = None

    # ------------------------------------------------------------------------------------------ control
    def stop(self) -> None:
        """Soft stop: claim nothing more, let running jobs finish within the grace period."""
        if self._stopping and self._hard_stop is not None:
            log.warning("worker %s: second stop request, releasing running jobs now", self.id)
            self._hard_stop.set()
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    @property
    def running_count(self) -> int:
        return len(self._running)

    def _start_or_hold(self, job: ClaimedJob) -> None:
        if self._slots.free() > 0 and not self._stopping:
            self._start(job)
        else:
            self._slots.hold(job)

    def _start_held(self) -> None:
        """A slot freed: start the best job held ahead, unless the worker is stopping."""
        if not self._stopping and (job := self._slots.next_held()) is not None:
            self._start(job)

    def _slot_freed(self) -> None:
        """A thread still busy with an abandoned attempt ended: its slot is free again."""
        self._start_held()
        self._wake_up()

    # ------------------------------------------------------------------------------------------ lifecycle
    async def run(self, handle_signals: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._wake, self._hard_stop = asyncio.Event(), asyncio.Event()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        log.info("worker %s started: %d slots, queues %s", self.id, self.concurrency, self.queues or "all")
        await self._announce()
        wake = self._wake

        def notified() -> None:
            loop.call_soon_threadsafe(wake.set)

        unsubscribe = self.backend.on_change(notified)
        services = [
            self._service(self._every(PROGRESS_FLUSH_S, self._write_progress, "writing progress"), "completer"),
            self._service(self._every(self.lease_s / 3, self._renew, "heartbeat"), "heartbeat"),
            self._service(self._every(CANCEL_CHECK_S, self._check_cancels, "cancel check"), "cancel watch"),
            self._service(self._every(min(self.lease_s / 3, 5.0), self._maintain, "maintenance"), "maintenance"),
            self._service(Scheduler(self.app, self.clock).run(), "scheduler"),
            *[self._service(s.run(), "webhook sender") for s in sender_for(self.app, self.clock, self.burst)],
        ]
        try:
            await self._fetch_loop()
            self._release_ahead()
            await self._drain()
        finally:
            if unsubscribe is not None:
                unsubscribe()
            for service in services:
                service.cancel()
            await asyncio.gather(*services, return_exceptions=True)
            self._release_ahead()  # (already done on a normal stop; this covers a fetch loop that failed)
            await self._flush()
            await self.backend.close_async()
            with contextlib.suppress(BackendError):
                await self._calls.run(self.backend.remove_worker, self.id)
            self._calls.close()
            self._task_threads.shutdown(wait=False, cancel_futures=True)
            self._executor.close()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("worker %s stopped after %d jobs", self.id, self.processed)
        if self._failure is not None:
            raise RuntimeError(f"worker {self.id} stopped: a side task failed") from self._failure

    async def _announce(self) -> None:
        """Register the tasks and send the first heartbeat; a database that refuses writes (a full disk, a read-only
        file) is logged and retried until it takes them or the worker is stopped, never a crash."""
        pause = ERROR_PAUSE_S
        while not self._stopping:
            try:
                await self._calls.run(self.backend.register_tasks, self.app.task_infos(), self.clock())
                await self._beat()
                return
            except BackendError as exc:
                log.warning("worker %s: cannot start yet, retrying in %gs: %s", self.id, pause, exc)
                await self._pause(pause)
                pause = min(pause * 2, STARTUP_PAUSE_MAX_S)

    def _service(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A side task; if it dies, the worker stops loudly instead of limping on."""
        task = asyncio.create_task(coro, name=f"conveyor {name}")

        def check(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.error("worker %s: %s died: %r", self.id, name, done.exception())
                self._failure = done.exception()
                self.stop()

        task.add_done_callback(check)
        return task

    def close(self) -> None:
        """Release threads and processes (after `run_once` calls; `run` does it itself)."""
        self._calls.close()
        self._task_threads.shutdown(wait=True)
        self._executor.close()

    async def run_once(self) -> int:
        """Claim what fits in the free slots, run those jobs to their end, write the outcomes; returns how many."""
        if self._wake is None:
            self._wake, self._hard_stop = asyncio.Event(), asyncio.Event()
        while self._slots.free() <= 0 and self._executor.abandoned:  # threads still busy with abandoned attempts
            busy = {asyncio.wrap_future(f) for f in list(self._executor.abandoned)}
            await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
        result = await self._claim(self._slots.free())
        tasks = [self._start(job) for job in result.jobs]
        if tasks:
            await asyncio.wait(tasks)
        await self._flush()
        return len(result.jobs)

    # ------------------------------------------------------------------------------------------ fetcher
    async def _claim(self, free: int) -> ClaimResult:
        now = self.clock()
        params = ClaimParams(self.id, free, now, now + self.lease_s, self.queues, self.types, self._slots.free())
        return await self._calls.run(self.backend.claim_jobs, params)

    async def _fetch_loop(self) -> None:
        """One database call per cycle: write the outcomes of finished jobs, then claim into the free slots."""
        may_have_more, keyed_left = True, False  # whether the last claim suggested more ready jobs
        due_at: float | None = None
        token = self.backend.wake_token()
        while not self._stopping:
            wanted = self._slots.wanted()
            # keyed jobs were left (no free slot, or their key at its limit): a job of ours that finished may have
            # freed one, so the cycle that writes its outcome claims too
            claim = wanted > 0 and (may_have_more or (keyed_left and bool(self._outcomes)))
            if not (claim or self._outcomes):
                may_have_more = await self._wait(token, due_at) or may_have_more
                continue
            token = self.backend.wake_token()
            result = await self._cycle(wanted if claim else 0)
            if result is None:
                continue
            for job in result.jobs:
                self._start_or_hold(job)
            may_have_more, due_at, keyed_left = len(result.jobs) == wanted, result.next_run_at, result.keyed_left
            if self.burst and not (result.jobs or self._slots.holding() or self._outcomes):
                if not await self._calls.run(self.backend.has_ready_jobs, self.queues, self.clock()):
                    return

    async def _cycle(self, wanted: int) -> ClaimResult | None:
        """Write the outcomes waiting, and claim `wanted` jobs (0: claim nothing) in one round trip; None if nothing
        was claimed (none asked, or the database failed: the outcomes wait for the next cycle)."""
        outcomes, self._outcomes = self._outcomes, []
        progress, self._final_progress = self._final_progress, []
        now = self.clock()
        params = None
        if wanted > 0:
            params = ClaimParams(self.id, wanted, now, now + self.lease_s, self.queues, self.types, self._slots.free())
        try:
            cycle = await self.backend.finish_and_claim_async(outcomes, progress, now, params)
            if cycle is None:  # no asyncio path for this backend or this cycle: the database thread
                cycle = await self._calls.run(self.backend.finish_and_claim, outcomes, progress, now, params)
        except BackendError as exc:
            self._outcomes[:0] = outcomes
            self._final_progress[:0] = progress
            log.warning("worker %s: claim failed, retrying: %s", self.id, exc)
            await self._pause(ERROR_PAUSE_S)
            return None
        lost, result = cycle
        self._lost(lost)
        return result if params is not None else None

    async def _wait(self, token: int, due_at: float | None) -> bool:
        """Sleep until there is something to write, a slot frees while jobs may be ready, the database changed, a
        scheduled job is due, or the poll interval passed; returns True if ready jobs may exist."""
        assert self._wake is not None
        deadline = time.monotonic() + self.poll_interval_s
        if due_at is not None:
            deadline = min(deadline, time.monotonic() + max(0.0, due_at - self.clock()))
        while not self._stopping:
            if self._outcomes:
                return False
            if self._slots.wanted() > 0:
                if self.backend.wake_token() != token or time.monotonic() >= deadline:
                    return True
            self._wake.clear()
            timer = asyncio.get_running_loop().call_later(IDLE_CHECK_S, self._wake.set)
            await self._wake.wait()
            timer.cancel()
        return False

    async def _pause(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    # ------------------------------------------------------------------------------------------ executing
    def _start(self, job: ClaimedJob) -> asyncio.Task[Outcome]:
        ctx = JobContext(self.app, job.id, job.type, job.queue, job.attempt, self._on_progress)
        running = Running(job, ctx)
        task = asyncio.create_task(self._executor.run(running), name=f"conveyor job {job.id}")
        running.task = task
        self._running[job.id] = running
        task.add_done_callback(lambda t: self._on_done(running, t))
        return task

    def _on_done(self, running: Running, task: asyncio.Task[Outcome]) -> None:
        job = running.job
        if running.stop_handle is not None:
            running.stop_handle.cancel()
        self._running.pop(job.id, None)
        if (last := self._progress.pop(job.id, None)) is not None:
            self._final_progress.append(last)
        self._outcomes.append(settled(running, task))
        self.processed += 1
        self._slots.ran(time.monotonic() - running.started)
        self._start_held()
        self._wake_up()

    def _on_progress(self, job_id: str, value: int, info: dict[str, Any] | None) -> None:
        running = self._running.get(job_id)
        if running is not None:
            self._progress[job_id] = ProgressUpdate(job_id, running.job.lease, value, info)

    def _cancel_running(self, job_ids: list[str]) -> None:
        held = self._slots.take_held(job_ids)
        if held:  # claimed ahead, not started: cancelled at once
            self._outcomes.extend(Cancelled(job.id, job.lease, "cancelled before it started") for job in held)
            self._wake_up()
        for job_id in job_ids:
            running = self._running.get(job_id)
            if running is not None and self._executor.cancel(running):
                log.info("worker %s: cancelling job %s", self.id, job_id)

    def _release_ahead(self) -> None:
        """Hand back the jobs claimed ahead of a slot: they never started, so their attempt does not count."""
        held = self._slots.hand_back()
        if held:
            log.info("worker %s: handing back %d jobs it had not started", self.id, len(held))
            reason = "handed back unstarted by worker shutdown"
            self._outcomes.extend(Released(job.id, job.lease, reason) for job in held)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then release the rest for another worker."""
        assert self._hard_stop is not None
        tasks = {r.task for r in self._running.values() if r.task is not None}
        if tasks and self.grace_s > 0 and not self._hard_stop.is_set():
            log.info("worker %s: waiting up to %gs for %d running jobs", self.id, self.grace_s, len(tasks))
            deadline = time.monotonic() + self.grace_s
            hard = asyncio.create_task(self._hard_stop.wait())
            pending = tasks
            while pending and not hard.done() and time.monotonic() < deadline:
                await asyncio.wait(
                    {*pending, hard}, timeout=deadline - time.monotonic(), return_when=asyncio.FIRST_COMPLETED
                )
                pending = {t for t in pending if not t.done()}
                if self._outcomes:  # written now: were the worker killed later in its drain, they would not rerun
                    with contextlib.suppress(BackendError):
                        await self._flush()
            hard.cancel()
        left_running = [r for r in self._running.values() if r.task is not None and not r.task.done()]
        for running in left_running:
            running.stop_reason = "shutdown"
            running.ctx._request_cancel()
            assert running.task is not None
            running.task.cancel()
        if left_running:
            log.info("worker %s: releasing %d unfinished jobs", self.id, len(left_running))
            await asyncio.wait({r.task for r in left_running if r.task is not None}, timeout=5.0)
