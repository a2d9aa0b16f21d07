"""The worker runtime in this process, on a real SQLite file: `run_once` with an injected clock where the behaviour
allows it, and a full `run()` in a background thread for what needs the side services (cancel watch, progress
writer, live queue settings, drain)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from conveyor import Cancel, Conveyor, JobContext, JobStatus, Retry, Settings
from conveyor.backends.base import ClaimParams, NewJob
from conveyor.ids import uuid7
from conveyor.testing import drain
from conveyor.worker import Worker, executor, slots
from conveyor.worker.maintenance import Maintenance
from tests.conftest import wait_for

T0 = 1_800_000_000.0


class Clock:
    """An injected clock: time moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(sqlite_url: str, settings: Settings, clock: Clock) -> Iterator[Conveyor]:
    conveyor = Conveyor(sqlite_url, settings=settings, clock=clock)
    yield conveyor
    conveyor.close()


@pytest.fixture
def live_app(sqlite_url: str, settings: Settings) -> Iterator[Conveyor]:
    """An app on the real clock, for workers that run their services."""
    conveyor = Conveyor(sqlite_url, settings=settings)
    yield conveyor
    conveyor.close()


def run_once(worker: Worker) -> int:
    return asyncio.run(worker.run_once())


class Background:
    """`Worker.run()` on its own event loop in a thread, so the test can steer it synchronously."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def go() -> None:
            self.loop = asyncio.get_running_loop()
            await self.worker.run()

        try:
            asyncio.run(go())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Background:
        self.thread.start()
        wait_for(lambda: self.loop is not None, what="the worker's loop")
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self.worker.stop)

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join()


def status(app: Conveyor, job_id: str) -> JobStatus:
    return app.require_job(job_id).status


# ---------------------------------------------------------------------------------------------- basics
def test_run_once_runs_sync_and_async_tasks_with_context(app: Conveyor) -> None:
    seen: list[tuple[str, int, str]] = []

    @app.task
    def sync_add(ctx: JobContext, a: int, b: int) -> int:
        seen.append((ctx.job_id, ctx.attempt, threading.current_thread().name))
        return a + b

    @app.task
    async def async_echo(ctx: JobContext, text: str) -> dict[str, str]:
        return {"text": text, "job": ctx.job_id}

    @app.task
    def no_ctx(x: int) -> int:
        return x * 2

    a = app.enqueue("sync_add", {"a": 2, "b": 3})
    b = app.enqueue("async_echo", {"text": "hi"})
    c = app.enqueue("no_ctx", {"x": 21})
    worker = Worker(app, concurrency=5)
    try:
        assert run_once(worker) == 3
        assert run_once(worker) == 0
    finally:
        worker.close()
    assert app.require_job(a.id).result == 5
    assert app.require_job(b.id).result == {"text": "hi", "job": b.id}
    assert app.require_job(c.id).result == 42
    assert seen[0][:2] == (a.id, 1) and seen[0][2].startswith("conveyor-task")
    done = app.require_job(a.id)
    assert done.status is JobStatus.COMPLETED and done.progress == 100 and done.attempts == 1
    assert done.started_at is not None and done.completed_at is not None and done.worker_id == worker.id


def test_claims_are_batched_by_free_slots(app: Conveyor) -> None:
    jobs = app.enqueue_many("demo.echo", [{"i": i} for i in range(5)])
    worker = Worker(app, concurrency=2)
    try:
        assert [run_once(worker) for _ in range(4)] == [2, 2, 1, 0]
    finally:
        worker.close()
    assert all(status(app, j.id) is JobStatus.COMPLETED for j in jobs)


def test_arguments_are_converted_to_the_annotated_types(app: Conveyor) -> None:
    got: list[Any] = []

    @app.task
    def typed(ctx: JobContext, day: date, n: int = 1) -> None:
        got.append((day, n))

    app.enqueue("typed", {"day": "2026-01-02"})
    worker = Worker(app)
    try:
        run_once(worker)
    finally:
        worker.close()
    assert got == [(date(2026, 1, 2), 1)]


def test_a_result_that_is_not_json_fails_the_job(app: Conveyor) -> None:
    @app.task(max_retries=0)
    def weird(ctx: JobContext) -> object:
        return object()

    job = app.enqueue("weird")
    worker = Worker(app)
    try:
        run_once(worker)
    finally:
        worker.close()
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and "JSON" in (failed.error or "")


def test_a_job_of_a_type_this_worker_does_not_know_is_left_for_a_worker_that_does(app: Conveyor) -> None:
    job_id = uuid7()
    app.backend.insert_jobs(
        [NewJob(job_id, "elsewhere.task", "default", 0, {}, 3, None, T0, [], {}, None, False)], T0
    )
    worker = Worker(app)
    try:
        run_once(worker)
    finally:
        worker.close()
    job = app.require_job(job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0 and job.error is None


# ---------------------------------------------------------------------------------------------- retries
def test_retries_with_backoff_then_completed(app: Conveyor, clock: Clock) -> None:
    @app.task(max_retries=3, retry_backoff=2.0, retry_backoff_max=5.0)
    def flaky(ctx: JobContext) -> int:
        if ctx.attempt < 4:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return ctx.attempt

    job = app.enqueue("flaky")
    worker = Worker(app, clock=clock)
    try:
        for attempt, ceiling in ((1, 2.0), (2, 4.0), (3, 5.0)):
            assert run_once(worker) == 1
            failed = app.require_job(job.id)
            assert failed.status is JobStatus.SCHEDULED and failed.attempts == attempt
            assert failed.error == f"RuntimeError: attempt {attempt}"
            assert "Traceback" in (failed.error_detail or "")
            delay = failed.run_at.timestamp() - clock.now
            assert ceiling / 2 - 1e-6 <= delay <= ceiling + 1e-6
            assert run_once(worker) == 0  # not due yet
            clock.advance(ceiling + 0.01)
        assert run_once(worker) == 1
    finally:
        worker.close()
    done = app.require_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.result == 4 and done.attempts == 4


def test_retries_run_out_and_the_job_fails(app: Conveyor, clock: Clock) -> None:
    @app.task(max_retries=2, retry_backoff=1.0)
    async def always(ctx: JobContext) -> None:
        raise ValueError("nope")

    job = app.enqueue("always")
    worker = Worker(app, clock=clock)
    try:
        for _ in range(3):
            assert run_once(worker) == 1
            clock.advance(10)
        assert run_once(worker) == 0
    finally:
        worker.close()
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 3 and failed.error == "ValueError: nope"


def test_enqueue_max_retries_overrides_the_task(app: Conveyor, clock: Clock) -> None:
    @app.task(max_retries=5)
    def bad(ctx: JobContext) -> None:
        raise ValueError("x")

    job = app.enqueue("bad", max_retries=0)
    worker = Worker(app, clock=clock)
    try:
        run_once(worker)
    finally:
        worker.close()
    assert status(app, job.id) is JobStatus.FAILED


def test_retry_exception_schedules_after_the_given_delay(app: Conveyor, clock: Clock) -> None:
    @app.task(max_retries=1)
    def later(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise Retry(after=42, reason="not yet")
        return "now"

    job = app.enqueue("later")
    worker = Worker(app, clock=clock)
    try:
        run_once(worker)
        waiting = app.require_job(job.id)
        assert waiting.status is JobStatus.SCHEDULED and waiting.error == "not yet"
        assert waiting.run_at.timestamp() == pytest.approx(clock.now + 42)
        clock.advance(41)
        assert run_once(worker) == 0
        clock.advance(1)
        assert run_once(worker) == 1
    finally:
        worker.close()
    assert app.require_job(job.id).result == "now"


def test_retry_exception_counts_against_the_budget(app: Conveyor, clock: Clock) -> None:
    @app.task(max_retries=1)
    def again(ctx: JobContext) -> None:
        raise Retry(after=1)

    job = app.enqueue("again")
    worker = Worker(app, clock=clock)
    try:
        run_once(worker)
        clock.advance(2)
        run_once(worker)
    finally:
        worker.close()
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2


def test_cancel_exception_ends_cancelled_without_retry(app: Conveyor) -> None:
    @app.task(max_retries=3)
    async def give_up(ctx: JobContext) -> None:
        raise Cancel("the source is gone")

    job = app.enqueue("give_up")
    worker = Worker(app)
    try:
        run_once(worker)
        assert run_once(worker) == 0
    finally:
        worker.close()
    cancelled = app.require_job(job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.attempts == 1
    assert app.job_events(job.id)[-1].message == "the source is gone"


# ---------------------------------------------------------------------------------------------- time-outs
def test_async_attempt_times_out(app: Conveyor) -> None:
    interrupted = threading.Event()

    @app.task(timeout=0.2, max_retries=0)
    async def slow(ctx: JobContext) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    job = app.enqueue("slow")
    worker = Worker(app)
    started = time.monotonic()
    try:
        run_once(worker)
    finally:
        worker.close()
    assert time.monotonic() - started < 10
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and "timed out after 0.2s" in (failed.error or "")
    assert interrupted.is_set()


def test_sync_attempt_times_out_and_sees_ctx_cancelled(app: Conveyor) -> None:
    saw_cancel = threading.Event()

    @app.task(timeout=0.2, max_retries=1, retry_backoff=60)
    def slow(ctx: JobContext) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if ctx.cancelled:
                saw_cancel.set()
                return "stopped"
            time.sleep(0.01)
        return "finished"

    job = app.enqueue("slow")
    worker = Worker(app)
    try:
        run_once(worker)
    finally:
        worker.close()
    assert saw_cancel.wait(10)
    timed_out = app.require_job(job.id)
    assert timed_out.status is JobStatus.SCHEDULED  # one retry left
    assert "TimeoutError" in (timed_out.error or "") and timed_out.result is None


def test_the_enqueue_timeout_overrides_the_task_default(app: Conveyor) -> None:
    @app.task(timeout=None, max_retries=0)
    async def unlimited(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    job = app.enqueue("unlimited", timeout=0.1)
    worker = Worker(app)
    try:
        run_once(worker)
    finally:
        worker.close()
    assert "timed out after 0.1s" in (app.require_job(job.id).error or "")


# ---------------------------------------------------------------------------------------------- rescue
def test_the_worker_rescues_jobs_of_a_dead_worker(app: Conveyor, clock: Clock) -> None:
    job = app.enqueue("demo.sleep", {"seconds": 0.01, "steps": 1})
    # a worker that claimed the job and died: nobody renews its lease
    app.backend.claim_jobs(ClaimParams("dead-worker", 1, clock.now, clock.now + 2.0))
    worker = Worker(app, clock=clock)
    try:
        assert run_once(worker) == 0
        asyncio.run(worker._maintenance.run_once(worker.clock()))
        assert status(app, job.id) is JobStatus.PROCESSING  # the lease still holds
        clock.advance(2.5)
        asyncio.run(worker._maintenance.run_once(worker.clock()))
        rescued = app.require_job(job.id)
        assert rescued.status is JobStatus.PENDING and "lease expired" in (rescued.error or "")
        assert run_once(worker) == 1
    finally:
        worker.close()
    done = app.require_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2 and done.worker_id == worker.id


def test_an_outcome_of_a_lost_lease_is_not_written(app: Conveyor, clock: Clock) -> None:
    """A worker that was too slow (its job was rescued and taken over) must not overwrite the new run."""
    release = threading.Event()

    @app.task
    def stuck(ctx: JobContext) -> str:
        release.wait(10)
        return f"attempt {ctx.attempt}"

    job = app.enqueue("stuck")
    slow = Worker(app, clock=clock, worker_id="slow")

    async def scenario() -> None:
        running = asyncio.ensure_future(slow.run_once())
        await asyncio.sleep(0.2)
        clock.advance(100)  # its lease is long gone
        assert app.backend.rescue_expired(clock.now) == 1
        taken = app.backend.claim_jobs(ClaimParams("fast", 1, clock.now, clock.now + 60)).jobs
        assert [j.id for j in taken] == [job.id]
        release.set()
        await running

    try:
        asyncio.run(scenario())
    finally:
        slow.close()
    assert slow.lost == [job.id]
    held = app.require_job(job.id)
    assert held.status is JobStatus.PROCESSING and held.worker_id == "fast" and held.result is None


# ---------------------------------------------------------------------------------------------- cancel
def test_cancel_a_pending_job_and_it_never_runs(app: Conveyor) -> None:
    ran: list[int] = []

    @app.task
    def record(ctx: JobContext, n: int) -> None:
        ran.append(n)

    keep = app.enqueue("record", {"n": 1})
    drop = app.enqueue("record", {"n": 2})
    app.cancel(drop.id)
    worker = Worker(app)
    try:
        assert run_once(worker) == 1
    finally:
        worker.close()
    assert ran == [1]
    assert status(app, keep.id) is JobStatus.COMPLETED and status(app, drop.id) is JobStatus.CANCELLED


def test_cancel_interrupts_a_running_async_task(live_app: Conveyor) -> None:
    app = live_app
    started, interrupted = threading.Event(), threading.Event()

    @app.task
    async def long(ctx: JobContext) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupted.set()
            raise
        return "done"

    job = app.enqueue("long")
    with Background(Worker(app, concurrency=2)):
        assert started.wait(10)
        assert app.cancel(job.id).status is JobStatus.PROCESSING  # requested; the worker stops it
        wait_for(lambda: status(app, job.id) is JobStatus.CANCELLED, timeout=10, what="the job cancelled")
    assert interrupted.is_set()
    cancelled = app.require_job(job.id)
    assert cancelled.result is None and cancelled.attempts == 1
    assert [e.to_status for e in app.job_events(job.id)] == ["pending", "processing", "cancelled"]


def test_a_cancelled_async_task_that_swallows_it_still_ends_cancelled(live_app: Conveyor) -> None:
    app = live_app
    started = threading.Event()

    @app.task
    async def stubborn(ctx: JobContext) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "finished anyway"
        return "done"

    job = app.enqueue("stubborn")
    with Background(Worker(app)):
        assert started.wait(10)
        app.cancel(job.id)
        wait_for(lambda: app.require_job(job.id).is_terminal, timeout=10, what="the job to end")
    ended = app.require_job(job.id)
    assert ended.status is JobStatus.CANCELLED and ended.result is None


def test_a_sync_task_sees_ctx_cancelled_and_never_ends_completed(live_app: Conveyor) -> None:
    app = live_app
    started, noticed = threading.Event(), threading.Event()

    @app.task
    def polling(ctx: JobContext) -> str:
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ctx.cancelled:
                noticed.set()
                return "returned normally after the cancel"
            time.sleep(0.01)
        return "done"

    job = app.enqueue("polling")
    with Background(Worker(app)):
        assert started.wait(10)
        app.cancel(job.id)
        assert noticed.wait(10)
        wait_for(lambda: app.require_job(job.id).is_terminal, timeout=10, what="the job to end")
    ended = app.require_job(job.id)
    assert ended.status is JobStatus.CANCELLED and ended.result is None


def test_a_sync_task_that_ignores_cancel_is_abandoned_after_the_grace(
    live_app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "CANCEL_GRACE_S", 0.3)
    app = live_app
    started, finish = threading.Event(), threading.Event()

    @app.task
    def deaf(ctx: JobContext) -> str:
        started.set()
        finish.wait(20)
        return "too late"

    job = app.enqueue("deaf")
    try:
        with Background(Worker(app)):
            assert started.wait(10)
            app.cancel(job.id)
            wait_for(lambda: status(app, job.id) is JobStatus.CANCELLED, timeout=10, what="the job cancelled")
    finally:
        finish.set()
    assert app.require_job(job.id).result is None


# ---------------------------------------------------------------------------------------------- progress
def test_the_last_progress_before_the_end_is_kept_with_the_outcome(live_app: Conveyor) -> None:
    """Progress reported just before the job ends is written with its outcome, not dropped: the finished job shows
    the last report's details (a running worker's cycle, and a drained one's flush)."""
    app = live_app

    @app.task
    async def quick(ctx: JobContext, n: int) -> int:
        ctx.progress(30, stage="start", done=1, total=3)
        ctx.progress(90, stage="end", done=3, total=3)
        return n

    jobs = [app.enqueue("quick", {"n": n}) for n in range(3)]
    with Background(Worker(app)):
        wait_for(lambda: all(status(app, j.id) is JobStatus.COMPLETED for j in jobs), timeout=15, what="completion")
    drained = app.enqueue("quick", {"n": 9})
    drain(app)
    for job_id in [*(j.id for j in jobs), drained.id]:
        done = app.require_job(job_id)
        assert done.status is JobStatus.COMPLETED
        assert (done.progress, done.progress_info) == (100, {"stage": "end", "done": 3, "total": 3})


def test_progress_is_written_while_the_job_runs(live_app: Conveyor) -> None:
    app = live_app
    go_on = threading.Event()

    @app.task
    def steps(ctx: JobContext) -> str:
        ctx.progress(40.7, stage="half", done=2, total=5)
        go_on.wait(20)
        return "ok"

    job = app.enqueue("steps")
    try:
        with Background(Worker(app)):
            wait_for(lambda: app.require_job(job.id).progress == 40, timeout=10, what="progress 40")
            running = app.require_job(job.id)
            assert running.status is JobStatus.PROCESSING
            assert running.progress_info == {"stage": "half", "done": 2, "total": 5}
            go_on.set()
            wait_for(lambda: status(app, job.id) is JobStatus.COMPLETED, timeout=10, what="completion")
    finally:
        go_on.set()
    assert app.require_job(job.id).progress == 100


# ---------------------------------------------------------------------------------------------- queue settings, live
def test_pause_and_resume_are_read_live(live_app: Conveyor) -> None:
    app = live_app
    app.pause_queue("default")
    job = app.enqueue("demo.echo", {"x": 1})
    with Background(Worker(app)):
        time.sleep(0.5)  # the worker polls every 0.1 s: several chances to (wrongly) claim
        assert status(app, job.id) is JobStatus.PENDING
        app.resume_queue("default")
        wait_for(lambda: status(app, job.id) is JobStatus.COMPLETED, timeout=10, what="the job after resume")


def test_queue_concurrency_is_read_live(live_app: Conveyor) -> None:
    app = live_app
    release = threading.Event()
    running_now: list[int] = []
    lock = threading.Lock()
    peak = [0]

    @app.task(queue="narrow")
    def hold(ctx: JobContext, i: int) -> int:
        with lock:
            running_now.append(i)
            peak[0] = max(peak[0], len(running_now))
        release.wait(20)
        with lock:
            running_now.remove(i)
        return i

    app.set_queue("narrow", concurrency=1)
    jobs = app.enqueue_many("hold", [{"i": i} for i in range(4)])
    try:
        with Background(Worker(app, concurrency=4)):
            wait_for(lambda: len(running_now) == 1, timeout=10, what="one job running")
            time.sleep(0.5)
            assert peak[0] == 1
            app.set_queue("narrow", concurrency=3)
            wait_for(lambda: len(running_now) == 3, timeout=10, what="three jobs running")
            release.set()
            wait_for(lambda: all(status(app, j.id) is JobStatus.COMPLETED for j in jobs), timeout=15)
    finally:
        release.set()
    assert peak[0] == 3


# ---------------------------------------------------------------------------------------------- burst, stop
def test_burst_ends_when_nothing_is_ready(live_app: Conveyor) -> None:
    app = live_app
    jobs = app.enqueue_many("demo.echo", [{"i": i} for i in range(20)])
    later = app.enqueue("demo.echo", {"later": True}, delay=3600)
    started = time.monotonic()
    app.run_worker(concurrency=4, burst=True)
    assert time.monotonic() - started < 30
    assert all(status(app, j.id) is JobStatus.COMPLETED for j in jobs)
    assert status(app, later.id) is JobStatus.SCHEDULED
    assert app.list_workers() == []  # the worker removed itself


def test_burst_runs_follow_up_jobs(live_app: Conveyor) -> None:
    app = live_app

    @app.task
    def parent(ctx: JobContext, n: int) -> None:
        if n > 0:
            ctx.enqueue("parent", {"n": n - 1})

    app.enqueue("parent", {"n": 3})
    app.run_worker(concurrency=2, burst=True)
    assert len(app.list_jobs(status="completed").jobs) == 4


def test_stop_lets_running_jobs_finish_within_the_grace(live_app: Conveyor) -> None:
    app = live_app
    started = threading.Event()

    @app.task
    async def short(ctx: JobContext) -> str:
        started.set()
        await asyncio.sleep(0.5)
        return "finished"

    job = app.enqueue("short")
    waiting = app.enqueue("demo.echo", {"x": 1}, priority=-1)
    bg = Background(Worker(app, concurrency=1, shutdown_grace_s=5))
    with bg:
        assert started.wait(10)
        bg.stop()
        bg.join()
    assert app.require_job(job.id).result == "finished"
    assert status(app, waiting.id) is JobStatus.PENDING  # nothing claimed after the stop


def test_stop_releases_jobs_still_running_after_the_grace(live_app: Conveyor) -> None:
    app = live_app
    started = threading.Event()
    sync_started = threading.Event()
    unblock = threading.Event()

    @app.task(max_retries=0)
    async def forever(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task(max_retries=0)
    def forever_sync(ctx: JobContext) -> None:
        sync_started.set()
        unblock.wait(20)

    a = app.enqueue("forever")
    b = app.enqueue("forever_sync")
    bg = Background(Worker(app, concurrency=2, shutdown_grace_s=0.5))
    try:
        with bg:
            assert started.wait(10) and sync_started.wait(10)
            t = time.monotonic()
            bg.stop()
            bg.join()
            assert time.monotonic() - t < 10
    finally:
        unblock.set()
    for job_id in (a.id, b.id):
        released = app.require_job(job_id)
        assert released.status is JobStatus.PENDING and released.attempts == 1
    # a release does not use up a retry: with max_retries=0 the job still runs again
    claimed = app.backend.claim_jobs(ClaimParams("next", 2, time.time(), time.time() + 60)).jobs
    assert {j.id for j in claimed} == {a.id, b.id} and all(j.retries_left == 0 for j in claimed)


def test_a_second_stop_releases_at_once(live_app: Conveyor) -> None:
    app = live_app
    started = threading.Event()

    @app.task
    async def forever(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    job = app.enqueue("forever")
    bg = Background(Worker(app, shutdown_grace_s=60))
    with bg:
        assert started.wait(10)
        bg.stop()
        time.sleep(0.3)
        assert bg.thread.is_alive()  # draining: waiting up to 60 s
        t = time.monotonic()
        bg.stop()
        bg.join()
        assert time.monotonic() - t < 10
    assert status(app, job.id) is JobStatus.PENDING


def test_the_worker_registers_itself_while_running(live_app: Conveyor) -> None:
    app = live_app
    go_on = threading.Event()

    @app.task
    def hold(ctx: JobContext) -> None:
        go_on.wait(20)

    job = app.enqueue("hold")
    try:
        with Background(Worker(app, concurrency=3, worker_id="w-test")):
            wait_for(lambda: status(app, job.id) is JobStatus.PROCESSING, timeout=10)
            (info,) = app.list_workers()
            assert (info.id, info.slots, info.running) == ("w-test", 3, [job.id])
            go_on.set()
    finally:
        go_on.set()
    assert app.list_workers() == []


def test_a_thread_still_running_an_abandoned_attempt_keeps_its_slot(live_app: Conveyor) -> None:
    """A sync attempt that timed out but ignores ctx.cancelled still holds its thread: the worker must not claim a
    job into that slot, where it would sit behind the stuck thread and time out without ever running."""
    app = live_app
    release = threading.Event()
    quick_ran = threading.Event()

    @app.task(timeout=0.3, max_retries=0)
    def deaf(ctx: JobContext) -> None:
        release.wait(20)

    @app.task(timeout=1.0, max_retries=0)
    def quick(ctx: JobContext) -> str:
        quick_ran.set()
        return "ok"

    stuck = app.enqueue("deaf", priority=1)
    waiting = app.enqueue("quick")
    try:
        with Background(Worker(app, concurrency=1)):
            wait_for(lambda: status(app, stuck.id) is JobStatus.FAILED, timeout=10, what="the time-out")
            time.sleep(1.5)  # longer than quick's own time-out
            assert status(app, waiting.id) is JobStatus.PENDING  # left for a worker with a free thread
            release.set()
            wait_for(lambda: status(app, waiting.id) is JobStatus.COMPLETED, timeout=10, what="the waiting job")
    finally:
        release.set()
    assert quick_ran.is_set()
    assert app.require_job(waiting.id).result == "ok"


def test_run_once_waits_for_a_thread_held_by_an_abandoned_attempt(app: Conveyor) -> None:
    release = threading.Event()
    order: list[str] = []

    @app.task(timeout=0.2, max_retries=0, priority=1)
    def deaf(ctx: JobContext) -> None:
        release.wait(20)
        order.append("deaf thread ended")

    @app.task(timeout=5, max_retries=0)
    def quick(ctx: JobContext) -> None:
        order.append("quick ran")

    stuck = app.enqueue("deaf")
    waiting = app.enqueue("quick")
    threading.Timer(0.5, release.set).start()
    worker = Worker(app, concurrency=1)
    try:
        assert run_once(worker) == 1
        assert status(app, stuck.id) is JobStatus.FAILED
        assert run_once(worker) == 1  # waits for the thread, then runs the job in it
    finally:
        release.set()
        worker.close()
    assert order == ["deaf thread ended", "quick ran"]
    assert status(app, waiting.id) is JobStatus.COMPLETED


def test_a_side_task_that_dies_stops_the_worker_loudly(live_app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Maintenance, now: float) -> None:
        raise ValueError("maintenance is broken")

    monkeypatch.setattr(Maintenance, "run_once", broken)
    bg = Background(Worker(live_app))
    with pytest.raises(RuntimeError, match="a side task failed") as info:
        with bg:
            bg.thread.join(20)
    assert isinstance(info.value.__cause__, ValueError)
    assert live_app.list_workers() == []


def test_outcomes_are_written_during_the_drain_not_only_at_exit(live_app: Conveyor) -> None:
    """A job that finishes within the grace is completed in the database at once: were the worker killed later in
    its drain, that job must not run again."""
    app = live_app
    started = threading.Event()
    long_release = threading.Event()

    @app.task
    async def short(ctx: JobContext) -> str:
        await asyncio.sleep(0.3)
        return "done"

    @app.task
    def long(ctx: JobContext) -> None:
        started.set()
        long_release.wait(20)

    job = app.enqueue("short", priority=1)
    app.enqueue("long")
    bg = Background(Worker(app, concurrency=2, shutdown_grace_s=30))
    try:
        with bg:
            assert started.wait(10)
            bg.stop()
            wait_for(lambda: status(app, job.id) is JobStatus.COMPLETED, timeout=10, what="the short job's outcome")
            assert bg.thread.is_alive()  # still draining the long one
            long_release.set()
    finally:
        long_release.set()


def test_the_heartbeat_keeps_a_long_job_leased(live_app: Conveyor) -> None:
    """A job running for several leases is never rescued from under its live worker (whose own rescuer runs)."""
    app = live_app

    @app.task
    async def long(ctx: JobContext) -> int:
        await asyncio.sleep(2.0)
        return ctx.attempt

    job = app.enqueue("long")
    worker = Worker(app, lease_s=0.6)
    with Background(worker):
        wait_for(lambda: status(app, job.id) is JobStatus.COMPLETED, timeout=20, what="the long job")
    done = app.require_job(job.id)
    assert done.attempts == 1 and done.result == 1 and worker.lost == []
    assert [e.to_status for e in app.job_events(job.id)] == ["pending", "processing", "completed"]


def test_a_queue_rate_limit_spreads_starts_over_time(live_app: Conveyor) -> None:
    app = live_app
    app.set_queue("metered", rate_limit=3)
    jobs = app.enqueue_many("demo.echo", [{"i": i} for i in range(7)], queue="metered")
    with Background(Worker(app, concurrency=10)):
        wait_for(lambda: all(status(app, j.id) is JobStatus.COMPLETED for j in jobs), timeout=20)
    starts = sorted(app.require_job(j.id).started_at.timestamp() for j in jobs)  # type: ignore[union-attr]
    # 3 per one-second window: 7 jobs need three windows
    assert starts[-1] - starts[0] >= 2.0 - 0.01
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 1.0 - 0.01, starts


def test_a_retry_after_forever_is_scheduled_at_the_latest_readable_time(app: Conveyor) -> None:
    @app.task(max_retries=1)
    def never_again(ctx: JobContext) -> None:
        raise Retry(after=float("inf"))

    job = app.enqueue("never_again")
    worker = Worker(app)
    try:
        run_once(worker)
    finally:
        worker.close()
    waiting = app.require_job(job.id)  # readable: its run_at is a datetime
    assert waiting.status is JobStatus.SCHEDULED and waiting.run_at.year == 9999
    assert [j.id for j in app.list_jobs().jobs] == [job.id]


def test_a_process_task_times_out_and_its_process_is_not_reused_meanwhile(sqlite_url: str) -> None:
    from tests.worker import process_tasks

    app = process_tasks.app
    app.use_database(sqlite_url)
    try:
        slow = app.enqueue("nap", {"seconds": 2.0})
        quick = app.enqueue("nap", {"seconds": 0.01})
        worker = Worker(app, concurrency=1)
        try:
            started = time.monotonic()
            assert run_once(worker) == 1
            assert time.monotonic() - started < 1.9  # the attempt ended at its time-out, not when the process did
            assert run_once(worker) == 1
        finally:
            worker.close()
        failed = app.require_job(slow.id)
        assert failed.status is JobStatus.FAILED and "timed out after 0.5s" in (failed.error or "")
        assert app.require_job(quick.id).status is JobStatus.COMPLETED
    finally:
        app.close()


# ---------------------------------------------------------------------------------------------- claiming ahead
def record_claims(app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limit of every claim the worker's cycles ask for."""
    limits: list[int] = []
    original = app.backend.finish_and_claim

    def recording(outcomes: Any, progress: Any, now: float, claim: ClaimParams | None) -> Any:
        if claim is not None:
            limits.append(claim.limit)
        return original(outcomes, progress, now, claim)

    monkeypatch.setattr(app.backend, "finish_and_claim", recording)
    return limits


def test_short_jobs_are_claimed_ahead_of_free_slots_and_slow_ones_are_not(
    live_app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = live_app

    @app.task
    async def quick(ctx: JobContext, i: int) -> int:
        return i

    @app.task
    async def slow(ctx: JobContext, i: int) -> int:
        await asyncio.sleep(slots.CLAIM_AHEAD_BELOW_S * 3)
        return i

    limits = record_claims(app, monkeypatch)
    quick_jobs = app.enqueue_many("quick", [{"i": i} for i in range(200)])
    asyncio.run(Worker(app, concurrency=2, burst=True).run())
    assert all(status(app, j.id) is JobStatus.COMPLETED for j in quick_jobs)
    assert limits[0] == 2  # nothing has run yet: no claim ahead
    assert max(limits) == 2 + slots.CLAIM_AHEAD_MAX_PER_SLOT * 2  # then up to five more per slot (no-op jobs)

    limits.clear()
    slow_jobs = app.enqueue_many("slow", [{"i": i} for i in range(6)])
    asyncio.run(Worker(app, concurrency=2, burst=True).run())
    assert all(status(app, j.id) is JobStatus.COMPLETED for j in slow_jobs)
    assert max(limits) == 2  # slow jobs: never more than the free slots


def test_jobs_held_ahead_start_best_first_cancel_at_once_and_go_back_unstarted_at_stop(live_app: Conveyor) -> None:
    app = live_app
    blocker_started = threading.Event()
    release_blocker = threading.Event()

    @app.task
    async def quick(ctx: JobContext) -> None:
        return None

    @app.task
    async def blocker(ctx: JobContext) -> str:
        blocker_started.set()
        while not release_blocker.is_set():
            await asyncio.sleep(0.01)
        return "done"

    for _ in range(3):  # short jobs first: they teach the worker that jobs here are short
        app.enqueue("quick", priority=10)
        time.sleep(0.002)
    block = app.enqueue("blocker", priority=5)
    low = app.enqueue("demo.echo", {"n": 1}, priority=0, max_retries=2)
    worker = Worker(app, concurrency=1, shutdown_grace_s=10)
    with Background(worker) as bg:
        assert blocker_started.wait(10)
        wait_for(lambda: [j.id for j in worker._slots.ahead] == [low.id], 10, what="the low job held ahead")
        high = app.enqueue("demo.echo", {"n": 2}, priority=3, max_retries=2)
        wait_for(lambda: [j.id for j in worker._slots.ahead] == [high.id, low.id], 10, what="the high job held first")
        assert status(app, high.id) is JobStatus.PROCESSING  # claimed: no other worker takes it meanwhile

        app.cancel(low.id)  # held, not started: cancelled at once
        wait_for(lambda: status(app, low.id) is JobStatus.CANCELLED, 10, what="the held job cancelled")
        assert app.job_events(low.id)[-1].message == "cancelled before it started"

        bg.stop()  # stopping: the held job must not start when the blocker's slot frees
        release_blocker.set()
        bg.join()
    assert app.require_job(block.id).result == "done"
    handed_back = app.require_job(high.id)
    assert handed_back.status is JobStatus.PENDING and handed_back.result is None
    assert app.job_events(high.id)[-1].message == "handed back unstarted by worker shutdown"
    [again] = app.backend.claim_jobs(ClaimParams("next", 5, time.time(), time.time() + 60)).jobs
    assert again.id == high.id and again.retries_left == 2  # the unstarted attempt did not count
