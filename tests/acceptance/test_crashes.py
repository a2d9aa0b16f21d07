"""Real worker processes that die, are killed, or are told to stop: no job is lost, none runs forever."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conveyor import Conveyor, JobStatus
from tests.acceptance.conftest import LEASE_S, StartWorker, wait_note, wait_status, wait_terminal
from tests.acceptance.tasks import read_notes
from tests.conftest import wait_for


def live_pids(app: Conveyor) -> set[int]:
    return {w.pid for w in app.list_workers()}


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


def test_sigkill_mid_job_runs_again_after_the_lease_with_two_attempts(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    job = acc_app.enqueue("slow_first", {"log": log, "key": "k"})
    first = start_worker("--processes", "0")
    wait_note(log, "start", "k", "1")
    wait_status(acc_app, job.id, "processing")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    killed_at = time.time()
    second = start_worker("--processes", "0")
    wait_status(acc_app, job.id, "completed", timeout=30)
    done = acc_app.require_job(job.id)
    assert done.attempts == 2 and done.result == 2
    starts = [w for w in read_notes(log) if w[0] == "start"]
    assert [(w[2], int(w[3])) for w in starts] == [("1", first.pid), ("2", second.pid)]
    events = acc_app.job_events(job.id)
    rescue = next(e for e in events if e.from_status == "processing" and e.to_status == "pending")
    assert "lease expired" in (rescue.message or "")
    # it went back to the queue only after the kill, and no sooner than a whole lease after its claim
    first_start = next(e.at for e in events if e.to_status == "processing")
    assert rescue.at.timestamp() >= killed_at - 0.05
    assert (rescue.at - first_start).total_seconds() >= LEASE_S
    assert [e.to_status for e in events] == ["pending", "processing", "pending", "processing", "completed"]


def test_a_task_that_kills_its_worker_every_time_ends_failed(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    supervisor = start_worker("--processes", "1", "--concurrency", "1", lease=1.0)
    job = acc_app.enqueue("crash", {"log": log, "key": "k"})  # max_retries=1: two attempts
    wait_status(acc_app, job.id, "failed", timeout=60)
    failed = acc_app.require_job(job.id)
    assert failed.attempts == 2 and "lease expired" in (failed.error or "")
    crashes = [w for w in read_notes(log) if w[0] == "crash"]
    assert [w[2] for w in crashes] == ["1", "2"]
    assert crashes[0][3] != crashes[1][3]  # each attempt killed a different process
    # the service is still up: the supervisor restarted its worker, which runs the next job
    assert supervisor.alive()
    ok = acc_app.enqueue("record", {"log": log, "key": "after"})
    wait_status(acc_app, ok.id, "completed", timeout=30)
    time.sleep(LEASE_S)  # never loops: nothing picks the failed job up again
    assert acc_app.require_job(job.id).attempts == 2
    assert len([w for w in read_notes(log) if w[0] == "crash"]) == 2
    assert "died with exit code 17" in supervisor.output()


@pytest.mark.parametrize("processes", ["1", "0"])
def test_sigterm_drains_within_the_grace_and_releases_the_rest(
    acc_app: Conveyor, start_worker: StartWorker, log: str, processes: str
) -> None:
    short = acc_app.enqueue("sleepy", {"log": log, "key": "short", "seconds": 1.0}, priority=3)
    long_async = acc_app.enqueue("sleepy", {"log": log, "key": "long", "seconds": 60}, priority=2)
    long_sync = acc_app.enqueue(
        "sync_sleepy", {"log": log, "key": "stubborn", "seconds": 60, "honour_cancel": False}, priority=1
    )
    queued = acc_app.enqueue("record", {"log": log, "key": "queued"}, priority=0)
    worker = start_worker("--processes", processes, "--concurrency", "3", grace=2.5)
    for key in ("short", "long", "stubborn"):
        wait_note(log, "start", key)
    worker.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert worker.wait(20) == 0, worker.output()
    took = time.monotonic() - stopped_at
    assert took < 2.5 + 10, f"the worker took {took:.1f}s to stop"

    assert acc_app.require_job(short.id).status is JobStatus.COMPLETED  # finished within the grace
    for job in (long_async, long_sync):
        released = acc_app.require_job(job.id)
        assert (released.status, released.attempts) == (JobStatus.PENDING, 1)
        assert released.worker_id is not None
    assert acc_app.require_job(queued.id).status is JobStatus.PENDING  # never claimed after the signal
    assert acc_app.require_job(queued.id).attempts == 0
    assert acc_app.list_workers() == []
    notes = read_notes(log)
    assert ["end", "short", "1"] in notes and ["interrupted", "long", "1"] in notes


def test_released_job_runs_again_without_losing_a_retry(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    job = acc_app.enqueue("sleepy", {"log": log, "key": "k", "seconds": 1.5}, max_retries=0)
    first = start_worker("--processes", "0", grace=0.2)
    wait_note(log, "start", "k", "1")
    first.signal(signal.SIGTERM)
    assert first.wait(20) == 0, first.output()
    assert acc_app.require_job(job.id).status is JobStatus.PENDING
    start_worker("--processes", "0")
    wait_status(acc_app, job.id, "completed", timeout=30)
    assert acc_app.require_job(job.id).attempts == 2


def test_a_second_sigterm_stops_at_once(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    job = acc_app.enqueue("sleepy", {"log": log, "key": "k", "seconds": 60})
    worker = start_worker("--processes", "0", grace=60)
    wait_note(log, "start", "k")
    worker.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert worker.alive()  # draining: it would wait up to 60 s
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output()
    assert acc_app.require_job(job.id).status is JobStatus.PENDING


def test_a_second_sigterm_to_the_supervisor_stops_at_once(
    acc_app: Conveyor, start_worker: StartWorker, log: str
) -> None:
    job = acc_app.enqueue("sync_sleepy", {"log": log, "key": "k", "seconds": 60, "honour_cancel": False})
    supervisor = start_worker("--processes", "1", grace=60)
    wait_note(log, "start", "k")
    supervisor.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert supervisor.alive()
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(10) == 0, supervisor.output()
    assert acc_app.require_job(job.id).status is JobStatus.PENDING


def test_supervisor_restarts_a_dead_worker_process(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    supervisor = start_worker("--processes", "2", "--concurrency", "2", db_flag=False)
    first = wait_for(lambda: live_pids(acc_app) if len(live_pids(acc_app)) == 2 else None, timeout=30)
    assert isinstance(first, set)
    # the URL came from the environment (a PostgreSQL one may hold a password): it stays there, out of `ps`
    for pid in first:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"worker" in cmdline and not any(acc_app.database_url.encode() in part for part in cmdline)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(live_pids(acc_app) - {victim}) == 2,
        timeout=30,
        what="a replacement worker process",
    )
    assert supervisor.alive()
    assert "restarting" in supervisor.output()
    jobs = [acc_app.enqueue("record", {"log": log, "key": f"k{i}"}) for i in range(10)]
    wait_terminal(acc_app, [j.id for j in jobs])
    assert all(acc_app.require_job(j.id).status is JobStatus.COMPLETED for j in jobs)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0
    wait_for(lambda: acc_app.list_workers() == [], timeout=10, what="the workers to deregister")


def test_workers_stop_when_their_supervisor_is_killed(acc_app: Conveyor, start_worker: StartWorker) -> None:
    supervisor = start_worker("--processes", "1")
    wait_for(lambda: len(live_pids(acc_app)) == 1, timeout=30, what="the worker process")
    (child,) = live_pids(acc_app)
    supervisor.signal(signal.SIGKILL)
    supervisor.wait(10)
    wait_for(lambda: process_gone(child), timeout=20, what="the orphaned worker to exit")


def test_ctrl_c_stops_gracefully(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    job = acc_app.enqueue("sleepy", {"log": log, "key": "k", "seconds": 0.5})
    worker = start_worker("--processes", "1", grace=10)
    wait_note(log, "start", "k")
    worker.signal(signal.SIGINT)
    assert worker.wait(20) == 0, worker.output()
    assert acc_app.require_job(job.id).status is JobStatus.COMPLETED  # it finished its job first
    assert acc_app.list_workers() == []

