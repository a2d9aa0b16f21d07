"""What a real `conveyor worker` process does with jobs: order, delays, retries, time-outs, cancels, pause/resume."""

from __future__ import annotations

import time

from conveyor import Conveyor, JobStatus
from tests.acceptance.conftest import StartWorker, wait_note, wait_status, wait_terminal
from tests.acceptance.tasks import read_notes


def test_priority_order_then_run_at_then_enqueue_order(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    plan = [("low-1", -5), ("mid-1", 0), ("high-1", 10), ("mid-2", 0), ("top", 99), ("low-2", -5), ("high-2", 10)]
    for key, priority in plan:
        acc_app.enqueue("record", {"log": log, "key": key}, priority=priority)
    worker = start_worker("--burst", "--concurrency", "1")
    assert worker.wait(60) == 0, worker.output()
    ran = [words[1] for words in read_notes(log)]
    assert ran == ["top", "high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]
    assert all(j.status is JobStatus.COMPLETED for j in acc_app.list_jobs().jobs)


def test_delayed_jobs_wait_for_their_time(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    start_worker("--concurrency", "4")
    delayed = acc_app.enqueue("record", {"log": log, "key": "delayed"}, delay=1.5)
    now = acc_app.enqueue("record", {"log": log, "key": "now"})
    wait_terminal(acc_app, [delayed.id, now.id])
    assert [words[1] for words in read_notes(log)] == ["now", "delayed"]
    job = acc_app.require_job(delayed.id)
    assert job.status is JobStatus.COMPLETED and job.started_at is not None
    assert (job.started_at - job.created_at).total_seconds() >= 1.5
    assert [(e.from_status, e.to_status) for e in acc_app.job_events(delayed.id)][:2] == [
        (None, "scheduled"), ("scheduled", "pending"),
    ]


def test_retries_end_completed_or_failed_with_the_right_attempts(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    start_worker("--concurrency", "4")
    recovers = acc_app.enqueue("flaky", {"log": log, "key": "recovers", "fail_times": 2})
    gives_up = acc_app.enqueue("flaky", {"log": log, "key": "gives-up", "fail_times": 99}, max_retries=2)
    wait_terminal(acc_app, [recovers.id, gives_up.id], timeout=60)

    done = acc_app.require_job(recovers.id)
    assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 3, 3)
    failed = acc_app.require_job(gives_up.id)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 3)
    assert failed.error == "RuntimeError: gives-up failed attempt 3"
    attempts = [w[2] for w in read_notes(log) if w[1] == "gives-up"]
    assert attempts == ["1", "2", "3"]
    # between attempts the job waited its backoff: at least half the ceiling (base 0.4 s, doubling)
    events = acc_app.job_events(gives_up.id)
    failures = [e.at for e in events if e.to_status == "scheduled"]
    restarts = [e.at for e in events if e.from_status == "scheduled"]
    assert len(failures) == len(restarts) == 2
    for n, (failed_at, due_at) in enumerate(zip(failures, restarts, strict=True)):
        assert (due_at - failed_at).total_seconds() >= 0.4 * 2**n / 2 - 0.01


def test_attempts_time_out(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    start_worker("--concurrency", "4")
    async_job = acc_app.enqueue("sleepy", {"log": log, "key": "a", "seconds": 60}, timeout=0.5)
    sync_job = acc_app.enqueue("sync_sleepy", {"log": log, "key": "s", "seconds": 60}, timeout=0.5)
    wait_terminal(acc_app, [async_job.id, sync_job.id])
    for job_id in (async_job.id, sync_job.id):
        job = acc_app.require_job(job_id)
        assert job.status is JobStatus.FAILED and "timed out after 0.5s" in (job.error or "")
        assert job.completed_at is not None and job.started_at is not None
        assert 0.4 <= (job.completed_at - job.started_at).total_seconds() < 20
    wait_note(log, "interrupted", "a")
    wait_note(log, "saw-cancel", "s")  # the sync task saw ctx.cancelled turn true


def test_cancel_pending_and_running_jobs(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    start_worker("--concurrency", "4")
    waiting = acc_app.enqueue("record", {"log": log, "key": "never"}, delay=2)
    acc_app.cancel(waiting.id)
    running_async = acc_app.enqueue("sleepy", {"log": log, "key": "a", "seconds": 60})
    running_sync = acc_app.enqueue("sync_sleepy", {"log": log, "key": "s", "seconds": 60})
    wait_note(log, "start", "a")
    wait_note(log, "start", "s")
    for job in (running_async, running_sync):
        assert acc_app.cancel(job.id).status is JobStatus.PROCESSING
    wait_terminal(acc_app, [running_async.id, running_sync.id], timeout=20)
    for job in (running_async, running_sync):
        ended = acc_app.require_job(job.id)
        assert ended.status is JobStatus.CANCELLED and ended.result is None
    wait_note(log, "interrupted", "a")
    wait_note(log, "saw-cancel", "s")
    time.sleep(2.5)  # the cancelled delayed job's time has come and gone
    assert acc_app.require_job(waiting.id).status is JobStatus.CANCELLED
    assert not [w for w in read_notes(log) if w[:2] == ["ran", "never"]]


def test_pause_and_resume_a_queue_under_a_running_worker(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    start_worker("--concurrency", "2")
    acc_app.pause_queue("default")
    job = acc_app.enqueue("record", {"log": log, "key": "held"})
    other = acc_app.enqueue("record", {"log": log, "key": "elsewhere"}, queue="other")
    wait_status(acc_app, other.id, "completed")  # the worker is up and claiming
    time.sleep(1.0)
    assert acc_app.require_job(job.id).status is JobStatus.PENDING
    acc_app.resume_queue("default")
    wait_status(acc_app, job.id, "completed")


def test_queue_option_limits_what_a_worker_claims(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    mine = acc_app.enqueue("record", {"log": log, "key": "mine"}, queue="mine")
    theirs = acc_app.enqueue("record", {"log": log, "key": "theirs"}, queue="theirs")
    worker = start_worker("--queues", "mine", "--burst")
    assert worker.wait(60) == 0, worker.output()
    assert acc_app.require_job(mine.id).status is JobStatus.COMPLETED
    assert acc_app.require_job(theirs.id).status is JobStatus.PENDING


def test_unique_key_holds_while_the_job_runs_in_a_worker(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    start_worker("--concurrency", "2")
    first = acc_app.enqueue("sleepy", {"log": log, "key": "u", "seconds": 1.0}, unique_key="report-42")
    wait_note(log, "start", "u")
    assert acc_app.require_job(first.id).status is JobStatus.PROCESSING
    again = acc_app.enqueue("sleepy", {"log": log, "key": "u2", "seconds": 0}, unique_key="report-42")
    assert again.id == first.id
    wait_status(acc_app, first.id, "completed")
    fresh = acc_app.enqueue("sleepy", {"log": log, "key": "u3", "seconds": 0}, unique_key="report-42")
    assert fresh.id != first.id
    wait_status(acc_app, fresh.id, "completed")
    assert [w[1] for w in read_notes(log) if w[0] == "start"] == ["u", "u3"]
