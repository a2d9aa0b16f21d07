"""PostgreSQL under failover-like faults: real worker processes reach the database through a TCP proxy of the test
(`proxy.py`) that adds 2 s latency spikes, cuts a connection mid-claim, or stops forwarding. Leases and fencing hold:
a worker that lost its lease cannot write an outcome (every write out of `processing` is guarded by worker and
attempt); no attempt of a job runs twice, the outcome written is that of the attempt that ran last, and no job is lost.
"""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobStatus
from tests.conftest import PG_ADMIN_URL, wait_for
from tests.faults import tasks
from tests.faults.conftest import Proc, Procs
from tests.faults.proxy import FaultProxy
from tests.faults.tasks import APP

LEASE_S = 3.0
RESCUED = "lease expired (worker lost)"


@pytest.fixture
def pg_app(pg_url: str) -> Iterator[Conveyor]:
    """The test's own connection: straight to the server, never through a proxy."""
    app = Conveyor(pg_url)
    app.tasks.update(tasks.app.tasks)
    yield app
    app.close()


@pytest.fixture
def proxy(procs: Procs) -> Iterator[Callable[[], FaultProxy]]:
    started: list[FaultProxy] = []
    host, port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0].split(":")

    def make() -> FaultProxy:
        started.append(FaultProxy(host, int(port)))
        started[-1].start()
        return started[-1]

    yield make
    procs.close()  # the workers first: they would only log the proxy's going
    for p in started:
        p.close()


def start_worker(procs: Procs, through: FaultProxy, pg_url: str, concurrency: int = 4) -> Proc:
    """A `conveyor worker` process whose every connection goes through `through`."""
    env = procs.env(CONVEYOR_LEASE_S=str(LEASE_S))
    worker = procs.start("worker", "--db", through.url(pg_url), "--app", APP, "--processes", "0",
                         "--concurrency", str(concurrency), env=env)
    through.claimers.append(f"{socket.gethostname()}:{worker.popen.pid}:".encode())
    return worker


def enqueue(app: Conveyor, log: Path, n: int, seconds: float) -> list[str]:
    return [j.id for j in app.enqueue_many("record", [{"log": str(log), "i": i, "seconds": seconds}
                                                      for i in range(n)])]


def completed(app: Conveyor) -> int:
    return app.stats().counts["completed"]


def assert_each_attempt_ran_once(app: Conveyor, ids: list[str], log: Path) -> dict[str, list[str]]:
    """Every job completed; no attempt of any job ran twice; the result written is that of the job's last attempt,
    by the worker that ran it. Returns each job's history messages."""
    runs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for job_id, attempt, pid, _ in tasks.effects(str(log)):
        runs[job_id].append((attempt, pid))
    histories: dict[str, list[str]] = {}
    problems = []
    for job_id in ids:
        job = app.require_job(job_id)
        attempts = [a for a, _ in runs[job_id]]
        events = app.job_events(job_id)
        done = [e for e in events if e.to_status is JobStatus.COMPLETED]
        histories[job_id] = [e.message or "" for e in events]
        if job.status is not JobStatus.COMPLETED:
            problems.append(f"{job_id} is {job.status}")
        elif len(attempts) != len(set(attempts)):
            problems.append(f"{job_id}: an attempt ran twice: {runs[job_id]}")
        elif (job.result["attempt"], job.result["pid"]) not in runs[job_id] or job.result["attempt"] != job.attempts:
            problems.append(f"{job_id}: result of attempt {job.result['attempt']}, attempts {job.attempts}, "
                            f"runs {runs[job_id]}")
        elif len(done) != 1 or f":{job.result['pid']}:" not in (done[0].worker_id or ""):
            problems.append(f"{job_id}: completed by {[e.worker_id for e in done]}, ran in {job.result['pid']}")
    assert not problems, "\n".join(problems[:20])
    return histories


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_latency_spikes(pg_app: Conveyor, pg_url: str, procs: Procs, proxy: Callable[[], FaultProxy],
                        tmp_path: Path) -> None:
    """Every request waits 2 s before it reaches the server, for longer than a lease, three times during a run:
    heartbeats come too late, leases run out, jobs are rescued under their workers' feet."""
    log = tmp_path / "effects.log"
    ids = enqueue(pg_app, log, 1500, 0.02)
    proxies = [proxy(), proxy()]
    workers = [start_worker(procs, p, pg_url) for p in proxies]
    for spike in range(3):
        wait_for(lambda s=spike: completed(pg_app) >= 300 * (s + 1), 120, 0.2, what=f"progress before spike {spike}")
        for p in proxies:
            p.latency = 2.0
        time.sleep(2 * LEASE_S)  # the fault itself: it lasts longer than a lease
        for p in proxies:
            p.latency = 0.0
    wait_for(lambda: completed(pg_app) == len(ids), 180, 0.5, what="every job done after the spikes")
    assert_each_attempt_ran_once(pg_app, ids, log)
    assert all(w.alive() for w in workers), [w.log()[-2000:] for w in workers]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_connection_dropped_mid_claim(pg_app: Conveyor, pg_url: str, procs: Procs,
                                      proxy: Callable[[], FaultProxy], tmp_path: Path) -> None:
    """A claim commits, then its connection is cut before the answer comes back: the worker never learns which jobs
    it holds, so its heartbeats do not renew them; they are rescued after their lease and run once."""
    log = tmp_path / "effects.log"
    ids = enqueue(pg_app, log, 600, 0.01)
    proxies = [proxy(), proxy()]
    for p in proxies:
        p.drop_claims(3)
    workers = [start_worker(procs, p, pg_url) for p in proxies]
    wait_for(lambda: completed(pg_app) == len(ids), 180, 0.5, what="every job done")
    assert [p.dropped_claims for p in proxies] == [3, 3]
    histories = assert_each_attempt_ran_once(pg_app, ids, log)
    assert any(RESCUED in h for h in histories.values()), "no claim whose answer was lost held a job"
    assert all(w.alive() for w in workers), [w.log()[-2000:] for w in workers]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_connection_that_hangs(pg_app: Conveyor, pg_url: str, procs: Procs, proxy: Callable[[], FaultProxy],
                               tmp_path: Path) -> None:
    """Worker A's connections stop forwarding while it runs jobs: its heartbeats and outcomes hang. Worker B rescues
    A's jobs after their lease and runs them; when A's connections come back, the outcomes A held are refused (it
    lost the lease), and A carries on."""
    log = tmp_path / "effects.log"
    ids = enqueue(pg_app, log, 40, 2.0)  # long enough that B is still running A's rescued jobs when A comes back
    silent, healthy = proxy(), proxy()
    a = start_worker(procs, silent, pg_url)
    wait_for(lambda: any(f":{a.popen.pid}:" in (w.id) and w.running for w in pg_app.list_workers()), 60, 0.1,
             what="worker A running jobs")
    silent.hang()
    b = start_worker(procs, healthy, pg_url)

    def rescued_from_a() -> bool:
        for job in pg_app.list_jobs(limit=1000).jobs:
            for e in pg_app.job_events(job.id) if job.attempts > 1 else []:
                if e.message == RESCUED and f":{a.popen.pid}:" in (e.worker_id or ""):
                    return True
        return False

    wait_for(rescued_from_a, 60, 0.5, what="B rescuing A's jobs while A hangs")
    silent.resume()
    wait_for(lambda: completed(pg_app) == len(ids), 180, 0.5, what="every job done")
    wait_for(lambda: "lease lost, outcome not written" in a.log(), 30, 0.2, what="A's stale outcomes refused")
    assert_each_attempt_ran_once(pg_app, ids, log)
    assert a.alive() and b.alive(), (a.log()[-2000:], b.log()[-2000:])
