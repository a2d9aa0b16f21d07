"""Fair limits per key across real worker processes, on both backends: fairness with claim batching, and a key's
concurrency never exceeded across processes, with workers SIGKILLed at random (checked from the job records)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobStatus
from conveyor.job import Job
from conveyor.settings import Settings
from tests.backends import proc_tasks
from tests.backends.test_postgres import Workers
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def keyed_app(db_url: str, settings: Settings) -> Iterator[Conveyor]:
    app = Conveyor(db_url, settings=settings)
    app.tasks.update(proc_tasks.app.tasks)
    yield app
    app.close()


@pytest.fixture
def procs(keyed_app: Conveyor, tmp_path: Path) -> Iterator[Workers]:
    group = Workers(keyed_app.database_url, tmp_path)
    yield group
    group.close()


def all_jobs(app: Conveyor) -> list[Job]:
    jobs, cursor = [], None
    while True:
        page = app.list_jobs(limit=1000, cursor=cursor)
        jobs += page.jobs
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor


def test_ten_of_b_start_among_the_first_twenty_after_ten_thousand_of_a(keyed_app: Conveyor, procs: Workers) -> None:
    app = keyed_app
    app.enqueue_many("keyed_work", [{"n": i, "seconds": 0.002} for i in range(10_000)], group_key="A")
    for _ in range(2):
        procs.start(concurrency=8)  # two processes, each claiming in batches (and ahead, for jobs without a key)
    wait_for(lambda: app.list_jobs(status="completed", limit=300).next_cursor is not None, 60,
             what="the workers to be busy with A's backlog")
    b_ids = {j.id for j in app.enqueue_many("keyed_work", [{"n": i} for i in range(10)], group_key="B")}
    enqueued_at = app.clock()  # B is committed: every start from now on could be one of B's
    wait_for(lambda: all(app.require_job(i).status is JobStatus.COMPLETED for i in b_ids), 60, what="B's jobs")
    jobs = all_jobs(app)
    last_b = max(j.started_at.timestamp() for j in jobs if j.id in b_ids and j.started_at)
    a_between = [j for j in jobs if j.id not in b_ids and j.started_at
                 and enqueued_at <= j.started_at.timestamp() < last_b]  # (a claim's jobs start at one instant)
    assert app.list_jobs(status="pending", limit=1).jobs, "A's backlog ran out: the test proves nothing"
    # B's ten, and A's starts from B's enqueue until B's last start: at most twenty starts in all
    assert len(a_between) + 10 <= 20, f"{len(a_between)} of A's jobs started before B's last"


def test_a_keys_concurrency_holds_across_processes_and_kills(
    keyed_app: Conveyor, procs: Workers, tmp_path: Path
) -> None:
    app = keyed_app
    app.set_queue("default", group_concurrency=2)
    keys = [f"tenant-{k}" for k in range(4)]
    log = tmp_path / "runs.log"
    app.enqueue_batch([{"type": "keyed_work", "group_key": keys[i % 4],
                        "args": {"n": i, "seconds": 0.05, "log": str(log), "key": keys[i % 4]}} for i in range(400)])
    workers = [procs.start(concurrency=4) for _ in range(4)]
    rng = random.Random(7)
    killed_at: dict[int, float] = {}
    def busy_worker() -> Any:
        """A live worker process that holds a job now (its pid is in the job's worker id)."""
        holding = {int(j.worker_id.split(":")[1]) for j in app.list_jobs(status="processing", limit=100).jobs
                   if j.worker_id}
        alive = [w for w in workers if w.poll() is None and w.pid in holding]
        return rng.choice(alive) if alive else None

    for _ in range(3):  # SIGKILL a worker that holds a job now and then, and start another in its place
        time.sleep(rng.uniform(0.5, 1.5))
        victim = wait_for(busy_worker, 30, 0.05, what="a worker holding a job")
        os.kill(victim.pid, signal.SIGKILL)
        killed_at[victim.pid] = time.time()
        victim.wait(10)
        workers.append(procs.start(concurrency=4))
    wait_for(lambda: not app.list_jobs(status=["pending", "processing"], limit=1).jobs, 90,
             what="every job to finish")
    jobs = all_jobs(app)
    assert len(jobs) == 400 and all(j.status is JobStatus.COMPLETED for j in jobs)
    assert killed_at and any(j.attempts > 1 for j in jobs), "no job lost its worker: the kills proved nothing"
    # every attempt as it really ran (the tasks log their start and end; a killed attempt ran until its kill)
    runs: dict[tuple[str, str], list[float]] = {}
    key_of, pid_of = {}, {}
    for line in log.read_text().splitlines():
        _what, job_id, attempt, key, pid, at = line.split()
        runs.setdefault((job_id, attempt), []).append(float(at))
        key_of[(job_id, attempt)], pid_of[(job_id, attempt)] = key, int(pid)
    peak = {}
    for key in keys:
        edges = []
        for run, times in runs.items():
            if key_of[run] == key:
                end = times[1] if len(times) > 1 else killed_at[pid_of[run]]
                edges += [(times[0], 1), (end, -1)]
        running = best = 0
        for _, step in sorted(edges):
            running += step
            best = max(best, running)
        peak[key] = best
    assert max(peak.values()) <= 2, peak
    assert max(peak.values()) == 2, f"the limit was never reached: the test proves nothing ({peak})"
