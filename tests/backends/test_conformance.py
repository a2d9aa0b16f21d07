"""One suite, every backend: the same operations and worker behaviour on SQLite and PostgreSQL (`db_url` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, JobContext, JobStatus
from conveyor.backends.base import (
    Cancelled,
    ClaimParams,
    Completed,
    Failed,
    JobFilter,
    Lease,
    ProgressUpdate,
    Released,
)
from conveyor.errors import InvalidArgumentsError, InvalidStateError, JobFailed, JobNotFoundError
from conveyor.settings import Settings
from conveyor.testing import drain
from conveyor.worker import Worker
from tests.conftest import wait_for


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed_app(db_url: str, settings: Settings, clock: Clock) -> Iterator[Conveyor]:
    conveyor = Conveyor(db_url, settings=settings, clock=clock)
    yield conveyor
    conveyor.close()


@contextlib.contextmanager
def running_worker(app: Conveyor, **options: object) -> Iterator[Worker]:
    """A real worker (its fetcher, heartbeat, maintenance) in a thread of this process."""
    worker = Worker(app, **options)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"
        loop.close()


def claim(app: Conveyor, worker_id: str = "w1", limit: int = 10, now: float | None = None, lease_s: float = 30.0):  # type: ignore[no-untyped-def]
    at = app.clock() if now is None else now
    return app.backend.claim_jobs(ClaimParams(worker_id, limit, at, at + lease_s))


# ------------------------------------------------------------------------------------------------ producing, reading
def test_enqueue_and_get(app: Conveyor) -> None:
    job = app.enqueue(
        "demo.echo", {"a": 1}, priority=3, tags=["project:1", "x"], metadata={"m": True}, timeout=9, max_retries=2
    )
    got = app.require_job(job.id)
    assert got.status is JobStatus.PENDING
    assert (got.type, got.queue, got.priority, got.args) == ("demo.echo", "default", 3, {"a": 1})
    assert (got.tags, got.metadata) == (["project:1", "x"], {"m": True})
    assert (got.timeout, got.max_retries, got.attempts) == (9, 2, 0)
    assert got.progress == 0 and got.result is None and got.worker_id is None
    assert got.to_dict() == job.to_dict()
    assert app.get_job("00000000-0000-0000-0000-000000000000") is None
    assert app.get_job("not-a-uuid") is None


def test_list_filters_and_cursor_pagination(app: Conveyor) -> None:
    ids = [app.enqueue("demo.echo", {"i": i}, tags=["even" if i % 2 == 0 else "odd"]).id for i in range(7)]
    app.enqueue("demo.sleep", {"seconds": 0}, queue="other")
    seen: list[str] = []
    cursor = None
    while True:
        page = app.list_jobs(type="demo.echo", limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, no duplicates, nothing missed
    assert {j.id for j in app.list_jobs(tag="even").jobs} == set(ids[0::2])
    assert [j.type for j in app.list_jobs(queue="other").jobs] == ["demo.sleep"]
    assert len(app.list_jobs(status="pending").jobs) == 8
    assert app.list_jobs(status=["completed", "failed"]).jobs == []
    assert set(app.backend.select_ids(JobFilter(tag="odd"))) == set(ids[1::2])
    with pytest.raises(InvalidArgumentsError):
        app.list_jobs(cursor="garbage")


def test_enqueue_many_is_all_or_nothing(app: Conveyor) -> None:
    jobs = app.enqueue_many("demo.sleep", [{"seconds": 0}, {"seconds": 1}], tags=["batch"])
    assert [j.args for j in jobs] == [{"seconds": 0}, {"seconds": 1}]
    with pytest.raises(InvalidArgumentsError):
        app.enqueue_many("demo.sleep", [{"seconds": 0}, {"seconds": "not a number"}])
    assert len(app.list_jobs().jobs) == 2


def test_unique_key_returns_the_open_job(app: Conveyor) -> None:
    first = app.enqueue("demo.echo", {"n": 1}, unique_key="report:7")
    again = app.enqueue("demo.echo", {"n": 2}, unique_key="report:7")
    assert again.id == first.id and again.args == {"n": 1}
    batch = app.enqueue_many("demo.echo", [{"n": 3}, {"n": 4}], unique_key="report:8")
    assert batch[0].id == batch[1].id
    assert drain(app) == 2
    after = app.enqueue("demo.echo", {"n": 5}, unique_key="report:7")  # the first one finished: a new job
    assert after.id != first.id and after.status is JobStatus.PENDING


# ------------------------------------------------------------------------------------------------ claiming
def test_claim_order_priority_then_run_at_then_enqueue_order(app: Conveyor) -> None:
    low = app.enqueue("demo.echo", {"n": "low"}, priority=0)
    high = app.enqueue("demo.echo", {"n": "high"}, priority=10)
    mid1 = app.enqueue("demo.echo", {"n": "mid1"}, priority=5)
    mid2 = app.enqueue("demo.echo", {"n": "mid2"}, priority=5)
    got = claim(app, limit=3).jobs
    assert [j.id for j in got] == [high.id, mid1.id, mid2.id]
    assert all(j.attempt == 1 and j.lease.worker_id == "w1" for j in got)
    assert [j.id for j in claim(app, "w2").jobs] == [low.id]
    assert claim(app, "w3").jobs == []
    assert app.require_job(high.id).status is JobStatus.PROCESSING
    assert app.require_job(high.id).attempts == 1


def test_delayed_job_waits_for_its_time(timed_app: Conveyor, clock: Clock) -> None:
    job = timed_app.enqueue("demo.echo", {}, delay=60)
    assert job.status is JobStatus.SCHEDULED
    result = claim(timed_app)
    assert result.jobs == []
    assert result.next_run_at == pytest.approx(clock.now + 60)
    assert not timed_app.backend.has_ready_jobs(None, clock.now)
    clock.advance(61)
    assert timed_app.backend.has_ready_jobs(None, clock.now)
    assert [j.id for j in claim(timed_app).jobs] == [job.id]


def test_retries_with_backoff_end_completed_with_the_right_attempts(timed_app: Conveyor, clock: Clock) -> None:
    job = timed_app.enqueue("demo.fail", {"times": 2}, max_retries=3)
    assert drain(timed_app) == 1
    failed_once = timed_app.require_job(job.id)
    assert failed_once.status is JobStatus.SCHEDULED and failed_once.attempts == 1
    assert "attempt 1" in (failed_once.error or "")
    assert failed_once.run_at.timestamp() > clock.now  # backoff
    assert drain(timed_app) == 0  # not due yet
    for _ in range(2):
        clock.advance(10)
        assert drain(timed_app) == 1
    done = timed_app.require_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 3
    assert done.result == {"succeeded_on_attempt": 3}


def test_retries_exhausted_end_failed(timed_app: Conveyor, clock: Clock) -> None:
    job = timed_app.enqueue("demo.fail", {"times": -1}, max_retries=1)
    drain(timed_app)
    clock.advance(10)
    drain(timed_app)
    clock.advance(10)
    assert drain(timed_app) == 0
    failed = timed_app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2
    assert failed.completed_at is not None
    with pytest.raises(JobFailed):
        timed_app.wait(job.id, timeout=1)


def test_timeout_fails_the_attempt(app: Conveyor) -> None:
    job = app.enqueue("demo.sleep", {"seconds": 30, "steps": 300}, timeout=0.3, max_retries=0)
    assert drain(app) == 1
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert "time" in (failed.error or "").lower()


# ------------------------------------------------------------------------------------------------ steering
def test_cancel_pending_and_scheduled(app: Conveyor) -> None:
    pending = app.enqueue("demo.echo", {})
    scheduled = app.enqueue("demo.echo", {}, delay=600)
    assert app.cancel(pending.id).status is JobStatus.CANCELLED
    assert app.cancel(scheduled.id).status is JobStatus.CANCELLED
    assert claim(app).jobs == []
    with pytest.raises(InvalidStateError):
        app.cancel(pending.id)
    with pytest.raises(JobNotFoundError):
        app.cancel("00000000-0000-0000-0000-000000000000")


def test_cancel_running_job(app: Conveyor) -> None:
    job = app.enqueue("demo.sleep", {"seconds": 60, "steps": 600})
    with running_worker(app, concurrency=2):
        wait_for(lambda: app.require_job(job.id).status is JobStatus.PROCESSING, 20, what="job started")
        requested = app.cancel(job.id)
        assert requested.status is JobStatus.PROCESSING and requested.cancel_requested
        wait_for(lambda: app.require_job(job.id).status is JobStatus.CANCELLED, 20, what="job cancelled")
    assert app.require_job(job.id).result is None


def test_state_rules_for_retry_delete_purge(app: Conveyor) -> None:
    ok = app.enqueue("demo.echo", {"x": 1})
    bad = app.enqueue("demo.fail", {"times": -1}, max_retries=0)
    running = app.enqueue("demo.echo", {"x": 2}, queue="held")
    claimed = app.backend.claim_jobs(ClaimParams("w1", 1, app.clock(), app.clock() + 30, ("held",)))
    assert [j.id for j in claimed.jobs] == [running.id]
    drain(app, ["default"])
    assert app.require_job(ok.id).status is JobStatus.COMPLETED
    assert app.require_job(bad.id).status is JobStatus.FAILED
    with pytest.raises(InvalidStateError):
        app.retry(ok.id)  # completed is final
    with pytest.raises(InvalidStateError):
        app.delete(running.id)  # processing
    retried = app.retry(bad.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1
    drain(app, ["default"])
    again = app.require_job(bad.id)
    assert again.status is JobStatus.FAILED and again.attempts == 2  # a fresh budget, attempts keep counting
    assert app.purge(older_than_s=0) == 2  # ok and bad; the processing job stays
    assert app.get_job(ok.id) is None and app.get_job(running.id) is not None
    pending = app.enqueue("demo.echo", {})
    app.delete(pending.id)
    assert app.get_job(pending.id) is None
    with pytest.raises(JobNotFoundError):
        app.delete(pending.id)


def test_pause_and_resume_queue(app: Conveyor) -> None:
    job = app.enqueue("demo.echo", {}, queue="mail")
    assert app.pause_queue("mail").paused
    assert claim(app).jobs == []
    assert not app.backend.has_ready_jobs(None, app.clock())
    assert [q.paused for q in app.list_queues() if q.name == "mail"] == [True]
    assert not app.resume_queue("mail").paused
    assert [j.id for j in claim(app).jobs] == [job.id]


def test_queue_concurrency_limit(app: Conveyor) -> None:
    app.set_queue("one", concurrency=1)
    for i in range(3):
        app.enqueue("demo.echo", {"i": i}, queue="one")
    free = app.enqueue("demo.echo", {}, queue="default")
    first = claim(app, "w1")
    assert sorted(j.queue for j in first.jobs) == ["default", "one"]
    assert free.id in {j.id for j in first.jobs}
    assert claim(app, "w2").jobs == []  # "one" is at its limit
    one = next(j for j in first.jobs if j.queue == "one")
    assert app.backend.finish_jobs([Completed(one.id, one.lease, None)], app.clock()) == []
    assert len(claim(app, "w2").jobs) == 1


def test_queue_rate_limit(timed_app: Conveyor, clock: Clock) -> None:
    timed_app.set_queue("slow", rate_limit=2)
    for i in range(5):
        timed_app.enqueue("demo.echo", {"i": i}, queue="slow")
    assert len(claim(timed_app).jobs) == 2
    assert claim(timed_app).jobs == []
    clock.advance(1.5)
    assert len(claim(timed_app).jobs) == 2


# ------------------------------------------------------------------------------------------------ leases
def test_lease_guard_rejects_a_stale_completion(timed_app: Conveyor, clock: Clock) -> None:
    app = timed_app
    job = app.enqueue("demo.echo", {}, max_retries=3)
    [first] = claim(app, "w1", lease_s=5).jobs
    clock.advance(10)  # w1's lease runs out
    assert app.backend.rescue_expired(clock.now) == 1
    rescued = app.require_job(job.id)
    assert rescued.status is JobStatus.PENDING and rescued.attempts == 1
    assert "lease" in (rescued.error or "") and rescued.error_detail is None
    [second] = claim(app, "w2").jobs
    assert second.attempt == 2
    lost = app.backend.finish_jobs([Completed(job.id, first.lease, {"by": "w1"})], clock.now)
    assert lost == [job.id]
    assert app.backend.finish_jobs([Completed(job.id, second.lease, {"by": "w2"})], clock.now) == []
    done = app.require_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.result == {"by": "w2"} and done.attempts == 2
    # a late failure or release of the first attempt changes nothing either
    assert app.backend.finish_jobs([Failed(job.id, first.lease, "late")], clock.now) == [job.id]
    assert app.backend.finish_jobs([Released(job.id, first.lease)], clock.now) == [job.id]
    assert app.require_job(job.id).status is JobStatus.COMPLETED


def test_a_job_never_starts_before_its_run_at(timed_app: Conveyor, clock: Clock) -> None:
    """A worker reads its clock at its cycle's start, before the statement that claims: a job that became ready after
    that instant (say a child released by another process's completion) starts at its run_at, not before, by both
    claim paths (the claim on its own and the worker's cycle)."""
    app = timed_app
    first = app.enqueue("demo.echo", {"n": 1})
    second = app.enqueue("demo.echo", {"n": 2})
    early = clock() - 0.5
    [claimed] = claim(app, limit=1, now=early).jobs
    assert app.require_job(claimed.id).started_at == app.require_job(first.id).run_at
    _lost, result = app.backend.finish_and_claim([], [], early, ClaimParams("w2", 1, early, early + 30))
    [cycled] = result.jobs
    assert cycled.id == second.id
    assert app.require_job(second.id).started_at == app.require_job(second.id).run_at


def test_one_cycle_writes_every_kind_of_outcome_then_claims(app: Conveyor) -> None:
    """A worker's cycle in one call: progress, each kind of outcome (one with a stale lease, reported lost), then a
    claim that already sees what the outcomes made ready again."""
    jobs = [app.enqueue("demo.echo", {"n": n}, max_retries=1) for n in range(5)]
    held = {c.id: c for c in claim(app, "w1").jobs}
    done, failing, cancelled, released, running = (held[j.id] for j in jobs)
    later = app.enqueue("demo.echo", {"n": 9})
    now = app.clock()
    outcomes = [
        Completed(done.id, done.lease, {"ok": True}),
        Failed(failing.id, failing.lease, "boom", "trace", now + 60),
        Cancelled(cancelled.id, cancelled.lease, "stopped by test"),
        Released(released.id, released.lease, "handed back"),
        Completed(running.id, Lease("w1", running.lease.attempt + 1), {"stale": True}),  # not the lease it holds
    ]
    progress = [ProgressUpdate(running.id, running.lease, 40, {"stage": "half"})]
    lost, result = app.backend.finish_and_claim(outcomes, progress, now, ClaimParams("w1", 3, now, now + 30))
    assert lost == [running.id]
    after = {j.id: app.require_job(j.id) for j in jobs}
    assert after[done.id].status is JobStatus.COMPLETED and after[done.id].result == {"ok": True}
    assert after[done.id].progress == 100
    assert after[failing.id].status is JobStatus.SCHEDULED and after[failing.id].error == "boom"
    assert after[failing.id].error_detail == "trace"
    assert after[cancelled.id].status is JobStatus.CANCELLED
    assert after[running.id].status is JobStatus.PROCESSING and after[running.id].result is None
    assert (after[running.id].progress, after[running.id].progress_info) == (40, {"stage": "half"})
    # the released job was pending again before the claim ran: claimed with the one enqueued later, best first
    assert [c.id for c in result.jobs] == [released.id, later.id]
    assert result.jobs[0].attempt == 2 and result.jobs[0].retries_left == 1
    messages = [e.message for e in app.job_events(released.id)]
    assert "handed back" in messages


def test_results_and_progress_json_cannot_hold_fail_only_their_job(app: Conveyor) -> None:
    @app.task(max_retries=0)
    def not_a_number() -> float:
        return float("nan")

    @app.task(max_retries=0)
    def odd_progress(ctx: JobContext) -> None:
        ctx.progress(50, ratio=float("inf"))

    @app.task(max_retries=0)
    def nul_text() -> dict[str, str]:
        return {"text": "a\x00b"}  # PostgreSQL's jsonb cannot hold it: refused on both backends alike

    @app.task(max_retries=0)
    def fine() -> dict[str, int]:
        return {"n": 1}

    nan_job = app.enqueue("not_a_number", {})
    progress_job = app.enqueue("odd_progress", {})
    nul_job = app.enqueue("nul_text", {})
    fine_job = app.enqueue("fine", {})
    drain(app)
    failed = app.require_job(nan_job.id)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.startswith("the task's result: nan is not valid JSON")
    failed = app.require_job(progress_job.id)
    assert failed.status is JobStatus.FAILED
    assert "progress details.ratio: inf is not valid JSON" in (failed.error or "")
    failed = app.require_job(nul_job.id)
    assert failed.status is JobStatus.FAILED
    assert "the task's result.text: a string with a NUL character" in (failed.error or "")
    assert app.require_job(fine_job.id).result == {"n": 1}


def test_rescue_runs_out_of_attempts(timed_app: Conveyor, clock: Clock) -> None:
    app = timed_app
    job = app.enqueue("demo.echo", {}, max_retries=1)
    for _ in range(2):
        assert len(claim(app, lease_s=5).jobs) == 1
        clock.advance(10)
        app.backend.rescue_expired(clock.now)
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2


def test_release_does_not_use_up_a_retry(app: Conveyor) -> None:
    job = app.enqueue("demo.echo", {}, max_retries=0)
    [claimed] = claim(app).jobs
    assert app.backend.finish_jobs([Released(job.id, claimed.lease)], app.clock()) == []
    released = app.require_job(job.id)
    assert released.status is JobStatus.PENDING
    [again] = claim(app).jobs
    assert again.attempt == 2 and again.retries_left == 0


def test_worker_rescues_jobs_of_a_lost_worker(app: Conveyor) -> None:
    job = app.enqueue("demo.echo", {"v": 1}, max_retries=3)
    claim(app, "ghost", lease_s=1.0)  # a worker that claims and dies
    with running_worker(app, concurrency=2, lease_s=2.0):
        wait_for(lambda: app.require_job(job.id).status is JobStatus.COMPLETED, 30, what="rescued and run")
    done = app.require_job(job.id)
    assert done.attempts == 2 and done.result == {"v": 1}


# ------------------------------------------------------------------------------------------------ history, outbox
def test_events_record_every_transition(timed_app: Conveyor, clock: Clock) -> None:
    app = timed_app
    job = app.enqueue("demo.fail", {"times": 1}, max_retries=2)
    drain(app)
    clock.advance(10)
    drain(app)
    events = app.job_events(job.id)
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, JobStatus.PENDING),
        (JobStatus.PENDING, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.SCHEDULED),
        (JobStatus.SCHEDULED, JobStatus.PENDING),
        (JobStatus.PENDING, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.COMPLETED),
    ]
    assert "attempt 1" in (events[2].message or "")
    assert events[1].worker_id is not None
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_changes_since_is_ordered_and_resumable(app: Conveyor) -> None:
    start = app.backend.last_change_id()
    a = app.enqueue("demo.echo", {})
    b = app.enqueue("demo.echo", {})
    drain(app)
    # PostgreSQL holds back changes while an older transaction anywhere in the cluster is open (5 s at most)
    wait_for(lambda: len(app.backend.changes_since(start)) == 6, 15, what="six changes")
    changes = app.backend.changes_since(start)
    ids = [c.id for c in changes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [c.job_id for c in changes][:2] == [a.id, b.id]
    assert {c.job_id for c in changes} == {a.id, b.id}
    assert len(changes) == 6  # created, started, completed, for each
    assert app.backend.last_change_id() == ids[-1]
    assert app.backend.changes_since(ids[2]) == changes[3:]
    assert app.backend.changes_since(ids[-1]) == []


def test_stats_workers_and_queues(app: Conveyor) -> None:
    app.enqueue("demo.echo", {})
    app.enqueue("demo.fail", {"times": -1}, max_retries=0)
    drain(app)
    stats = app.stats()
    assert stats.counts["completed"] == 1 and stats.counts["failed"] == 1
    assert stats.counts_by_type["demo.echo"] == {"completed": 1}
    assert stats.durations["demo.echo"]["count"] == 1
    assert sum(m["completed"] for m in stats.throughput) == 1
    with running_worker(app, concurrency=3, queues=("default",)) as worker:
        wait_for(lambda: any(w.id == worker.id for w in app.list_workers()), 20, what="worker listed")
        [info] = [w for w in app.list_workers() if w.id == worker.id]
        assert info.slots == 3 and info.queues == ["default"] and info.running == []
    assert all(w.id != worker.id for w in app.list_workers())


def test_prune_deletes_old_finished_jobs_only(timed_app: Conveyor, clock: Clock) -> None:
    app = timed_app
    old = app.enqueue("demo.echo", {"n": "old"})
    drain(app)
    clock.advance(3600)
    recent = app.enqueue("demo.echo", {"n": "recent"})
    drain(app)
    waiting = app.enqueue("demo.echo", {"n": "waiting"}, delay=10)
    assert app.backend.prune(clock.now - 1800, clock.now) == 1
    assert app.get_job(old.id) is None and app.job_events(recent.id)
    assert {app.require_job(recent.id).status, app.require_job(waiting.id).status} == {
        JobStatus.COMPLETED, JobStatus.SCHEDULED,
    }


def test_queue_concurrency_holds_across_workers(app: Conveyor) -> None:
    app.set_queue("narrow", concurrency=2)
    jobs = app.enqueue_many("demo.sleep", [{"seconds": 0.3, "steps": 1}] * 8, queue="narrow")
    peak = 0
    with running_worker(app, concurrency=4), running_worker(app, concurrency=4):
        deadline = time.monotonic() + 60
        while not all(app.require_job(j.id).status is JobStatus.COMPLETED for j in jobs):
            assert time.monotonic() < deadline, "jobs did not finish"
            running = len(app.list_jobs(status="processing", queue="narrow").jobs)
            peak = max(peak, running)
            time.sleep(0.02)
    assert 1 <= peak <= 2


def test_big_batch_round_trips_awkward_text(app: Conveyor) -> None:
    awkward = {"text": "tab\there\nnew line\r\\back\\slash \\N \u00e9\u4e2d\U0001f600 'quote\" %s %(x)s", "n": 1.5e-7}
    # 450 jobs: several of PostgreSQL's COPY chunks
    jobs = app.enqueue_many("demo.echo", [{**awkward, "i": i} for i in range(450)], tags=["a\tb", "c\\d"],
                            metadata={"why": "line\nbreak"}, timeout=2.5, priority=-3)
    for i in (0, 77, 449):
        got = app.require_job(jobs[i].id)
        assert got.args == {**awkward, "i": i}
        assert (got.tags, got.metadata) == (["a\tb", "c\\d"], {"why": "line\nbreak"})
        assert (got.timeout, got.priority) == (2.5, -3)
        assert got == jobs[i]  # what enqueue_many returned is what was stored
    assert len(app.list_jobs(tag="c\\d", limit=1000).jobs) == 450


def test_claim_by_type(app: Conveyor) -> None:
    echo = app.enqueue("demo.echo", {})
    sleep = app.enqueue("demo.sleep", {"seconds": 0}, priority=-5)
    app.set_queue("limited", concurrency=5)
    limited_sleep = app.enqueue("demo.sleep", {"seconds": 0}, queue="limited", priority=-9)
    limited_echo = app.enqueue("demo.echo", {}, queue="limited")
    got = app.backend.claim_jobs(ClaimParams("w1", 10, app.clock(), app.clock() + 30, None, ("demo.sleep",)))
    assert [j.id for j in got.jobs] == [sleep.id, limited_sleep.id]
    rest = claim(app, "w2").jobs
    assert {j.id for j in rest} == {echo.id, limited_echo.id}


def test_limited_queue_does_not_jump_ahead_of_better_jobs(app: Conveyor) -> None:
    app.set_queue("limited", concurrency=3)
    low = app.enqueue("demo.echo", {"n": "limited, low"}, queue="limited", priority=0)
    high = app.enqueue("demo.echo", {"n": "default, high"}, priority=10)
    mid = app.enqueue("demo.echo", {"n": "limited, mid"}, queue="limited", priority=5)
    assert [j.id for j in claim(app, limit=1).jobs] == [high.id]
    assert [j.id for j in claim(app, limit=5).jobs] == [mid.id, low.id]


def test_tokens_move_when_another_process_writes(app: Conveyor, db_url: str, settings: Settings) -> None:
    other = Conveyor(db_url, settings=settings)
    try:
        change, wake = app.backend.change_token(), app.backend.wake_token()
        job = other.enqueue("demo.echo", {})
        wait_for(lambda: app.backend.wake_token() != wake, 10, what="wake token moved by an enqueue")
        wait_for(lambda: app.backend.change_token() != change, 10, what="change token moved by an enqueue")
        change = app.backend.change_token()
        [claimed] = other.backend.claim_jobs(ClaimParams("w", 1, other.clock(), other.clock() + 30)).jobs
        other.backend.finish_jobs([Completed(job.id, claimed.lease, None)], other.clock())
        wait_for(lambda: app.backend.change_token() != change, 10, what="change token moved by a completion")
    finally:
        other.close()


def test_rescue_clears_the_traceback_of_an_older_failure(timed_app: Conveyor, clock: Clock) -> None:
    app = timed_app
    job = app.enqueue("demo.fail", {"times": 1}, max_retries=3)
    drain(app)
    assert app.require_job(job.id).error_detail  # the first attempt's traceback
    clock.advance(10)
    claim(app, lease_s=5)
    clock.advance(10)
    assert app.backend.rescue_expired(clock.now) == 1
    rescued = app.require_job(job.id)
    assert "worker lost" in (rescued.error or "") and rescued.error_detail is None
