"""Real worker processes and signals (SIGKILL, a task killing its worker, SIGTERM: on both backends; SIGSTOP, restart
and chaos on PostgreSQL), and PostgreSQL only: transactional enqueue, the SQL API, migrations, wake-ups, leadership."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, JobStatus
from conveyor.backends.base import ClaimParams, Completed
from conveyor.backends.postgres import SCHEMA_VERSION, PostgresBackend
from conveyor.settings import Settings
from conveyor.testing import drain
from tests.backends import proc_tasks
from tests.conftest import PG_ADMIN_URL, wait_for

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0


@pytest.fixture
def pg_app(pg_url: str, settings: Settings) -> Iterator[Conveyor]:
    app = Conveyor(pg_url, settings=settings)
    app.tasks.update(proc_tasks.app.tasks)
    yield app
    app.close()


class Workers:
    """Real `conveyor worker` processes on one database; every one is killed at the end of the test."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url  # tests may point it at another database before starting workers
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *extra: str, processes: int = 0, concurrency: int = 4, grace: float = 5.0
    ) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        cmd = [sys.executable, "-m", "conveyor", "worker", "--app", "tests.backends.proc_tasks:app",
               "--db", self.url, "--processes", str(processes), "--concurrency", str(concurrency),
               "--lease", str(LEASE_S), "--grace", str(grace), "--log-level", "INFO", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CONVEYOR_POLL_INTERVAL_S": "0.2"}
        with (self.tmp / f"worker-{n}.log").open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.tmp / f"worker-{self.procs.index(proc)}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers("", tmp_path)
    yield group
    group.close()


@pytest.fixture
def pg_workers(workers: Workers, pg_url: str) -> Workers:
    workers.url = pg_url
    return workers


@pytest.fixture
def any_app(app: Conveyor) -> Conveyor:
    """The conformance `app` (SQLite and PostgreSQL) with the process tests' tasks."""
    app.tasks.update(proc_tasks.app.tasks)
    return app


def starts(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


# ------------------------------------------------------------------------------------------------ real processes
def test_sigkill_mid_job_reruns_after_the_lease(any_app: Conveyor, workers: Workers, tmp_path: Path) -> None:
    workers.url = any_app.database_url
    log = tmp_path / "starts.log"
    job = any_app.enqueue("slow_first", {"seconds": 60, "log": str(log)})
    first = workers.start()
    wait_for(lambda: len(starts(log)) == 1, 30, what="first attempt started")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    workers.start()
    wait_for(lambda: any_app.require_job(job.id).status is JobStatus.COMPLETED, 60, what="re-run after the lease")
    done = any_app.require_job(job.id)
    assert done.attempts == 2 and done.result["attempt"] == 2
    assert [s[1] for s in starts(log)] == ["1", "2"]
    assert [e.to_status for e in any_app.job_events(job.id)] == [
        JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED,
    ]


def test_task_that_kills_its_process_every_time_ends_failed(any_app: Conveyor, workers: Workers) -> None:
    workers.url = any_app.database_url
    job = any_app.enqueue("die", {})
    workers.start(processes=1)  # the supervisor restarts the child each time the task kills it
    wait_for(lambda: any_app.require_job(job.id).status is JobStatus.FAILED, 90, what="job failed for good")
    failed = any_app.require_job(job.id)
    assert failed.attempts == 2  # max_retries=1: two attempts, then never again
    assert "lease expired" in (failed.error or "") or "worker lost" in (failed.error or "")


def test_sigterm_drains_running_jobs(any_app: Conveyor, workers: Workers, tmp_path: Path) -> None:
    workers.url = any_app.database_url
    log = tmp_path / "starts.log"
    short = any_app.enqueue("slow_first", {"seconds": 1.5, "log": str(log)})
    long = any_app.enqueue("slow_first", {"seconds": 120, "log": str(log)})
    proc = workers.start(grace=4.0)
    wait_for(lambda: len(starts(log)) == 2, 30, what="both jobs started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert any_app.require_job(short.id).status is JobStatus.COMPLETED  # finished within the grace period
    released = any_app.require_job(long.id)
    assert released.status is JobStatus.PENDING and released.attempts == 1  # handed back, retry not used up
    workers.start()
    wait_for(lambda: any_app.require_job(long.id).status is JobStatus.COMPLETED, 30, what="released job re-run")
    assert any_app.require_job(long.id).result["attempt"] == 2


@pytest.mark.usefixtures("pg_workers")
def test_frozen_worker_past_its_lease_cannot_complete(pg_app: Conveyor, workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "starts.log"
    job = pg_app.enqueue("slow_first", {"seconds": 3, "log": str(log)})
    frozen = workers.start()
    wait_for(lambda: len(starts(log)) == 1, 30, what="first attempt started")
    os.killpg(frozen.pid, signal.SIGSTOP)
    try:
        other = workers.start()
        wait_for(lambda: pg_app.require_job(job.id).status is JobStatus.COMPLETED, 60, what="second attempt done")
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    # The frozen worker wakes up, its first attempt finishes, and its completion is refused: the lease is gone.
    wait_for(lambda: "lease lost" in workers.log(frozen), 30, what="late completion rejected")
    done = pg_app.require_job(job.id)
    assert done.attempts == 2 and done.result["attempt"] == 2 and done.result["pid"] == other.pid
    assert done.worker_id is not None and str(other.pid) in done.worker_id


# ------------------------------------------------------------------------------------------------ transactions
def test_transactional_enqueue(pg_app: Conveyor, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
        conn.commit()
        with contextlib.suppress(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO orders (item) VALUES ('lost')")
            doomed = pg_app.enqueue("demo.echo", {"order": "lost"}, connection=conn)
            doomed_batch = pg_app.enqueue_many("demo.echo", [{"n": n} for n in range(300)], connection=conn)  # COPY
            raise RuntimeError("the business transaction fails")
        with conn.transaction() as tx:
            conn.execute("INSERT INTO orders (item) VALUES ('kept')")
            kept = pg_app.enqueue("demo.echo", {"order": "kept"}, connection=tx)
            many = pg_app.enqueue_many("demo.echo", [{"n": 1}, {"n": 2}], connection=conn)
            batch = pg_app.enqueue_many("demo.echo", [{"n": n} for n in range(300)], connection=conn)  # COPY
            assert pg_app.get_job(kept.id) is None  # not visible outside the transaction before it commits
        assert pg_app.get_job(doomed.id) is None
        assert not any(pg_app.get_job(j.id) for j in doomed_batch)
        assert [pg_app.get_job(j.id) for j in batch] == batch  # stored as returned
        assert pg_app.require_job(kept.id).args == {"order": "kept"}
        assert all(pg_app.get_job(j.id) is not None for j in many)
        assert conn.execute("SELECT item FROM orders").fetchall() == [("kept",)]
    assert drain(pg_app) == 303
    with psycopg.connect(pg_url) as conn:  # no transaction block: the enqueue opens the connection's transaction
        first = pg_app.enqueue("demo.echo", {"n": "first statement"}, connection=conn)
        conn.execute("INSERT INTO orders (item) VALUES ('undone')")
        conn.rollback()
        assert pg_app.get_job(first.id) is None
        second = pg_app.enqueue("demo.echo", {"n": "then commit"}, connection=conn)
        conn.commit()
    assert pg_app.require_job(second.id).status is JobStatus.PENDING
    with psycopg.connect(pg_url, autocommit=True) as conn:  # autocommit: the job is its own transaction
        assert pg_app.get_job(pg_app.enqueue("demo.echo", {}, connection=conn).id) is not None


def test_transactional_enqueue_through_a_task(pg_app: Conveyor, pg_url: str) -> None:
    @pg_app.task
    def notify(ctx: object, connection: str) -> str:  # an argument named like the option stays an argument
        return connection

    @pg_app.task
    def welcome(ctx: object, email: str) -> str:
        return email

    with psycopg.connect(pg_url) as conn:
        with contextlib.suppress(RuntimeError), conn.transaction():
            rolled_back = welcome.enqueue(email="a@example.com", connection=conn)
            raise RuntimeError("rolled back")
        with conn.transaction():
            committed = welcome.enqueue(email="b@example.com", connection=conn)
    assert pg_app.get_job(rolled_back.id) is None
    assert pg_app.require_job(committed.id).args == {"email": "b@example.com"}
    assert notify.enqueue(connection="smtp").args == {"connection": "smtp"}


def test_sqlite_refuses_a_connection(sqlite_app: Conveyor) -> None:
    from conveyor.errors import ConfigError

    with pytest.raises(ConfigError, match="PostgreSQL"):
        sqlite_app.enqueue("demo.echo", {}, connection=object())


# ------------------------------------------------------------------------------------------------ SQL API
def test_sql_api_enqueue_and_read(pg_app: Conveyor, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        job_id = conn.execute(
            "SELECT conveyor.enqueue('demo.echo', '{\"from\": \"sql\"}', priority => 7, tags => ARRAY['sql'])"
        ).fetchone()[0]
        same = conn.execute("SELECT conveyor.enqueue('demo.echo', unique_key => 'k1')").fetchone()[0]
        again = conn.execute("SELECT conveyor.enqueue('demo.echo', unique_key => 'k1')").fetchone()[0]
        assert same == again
        later = conn.execute("SELECT conveyor.enqueue('demo.echo', delay => 3600)").fetchone()[0]
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT conveyor.enqueue('demo.echo', '[1, 2]')")
    job = pg_app.require_job(str(job_id))
    assert (job.status, job.priority, job.tags, job.args) == (JobStatus.PENDING, 7, ["sql"], {"from": "sql"})
    assert pg_app.require_job(str(later)).status is JobStatus.SCHEDULED
    assert str(job_id) > "01"  # a UUIDv7, time-ordered like the ones Python makes
    assert drain(pg_app) == 2
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT status, result, attempts, completed_at IS NOT NULL FROM conveyor.jobs WHERE id = %s",
                           (job_id,)).fetchone()
        assert row == ("completed", {"from": "sql"}, 1, True)
        history = conn.execute("SELECT to_status FROM conveyor.job_events WHERE job_id = %s ORDER BY id",
                               (job_id,)).fetchall()
        assert [h[0] for h in history] == ["pending", "processing", "completed"]
        assert conn.execute("SELECT conveyor.cancel(%s)", (later,)).fetchone()[0] == "cancelled"
        assert conn.execute("SELECT conveyor.retry(%s)", (later,)).fetchone()[0] == "pending"
        assert conn.execute("SELECT conveyor.retry(%s)", (later,)).fetchone()[0] == "pending"  # not retryable now
        assert conn.execute("SELECT conveyor.cancel(%s)", (later,)).fetchone()[0] == "cancelled"
        queues = conn.execute("SELECT name, pending, scheduled FROM conveyor.queues").fetchall()
        assert queues == [("default", 0, 0)]


def test_sql_enqueued_job_of_a_type_no_worker_runs_waits_for_one(pg_app: Conveyor, pg_url: str) -> None:
    """A worker claims only the types it registers: a job of another type stays pending (never failed as unknown)
    until a worker that runs it comes, and meanwhile `stats` names it."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        job_id = conn.execute("SELECT conveyor.enqueue('report', max_retries => 0)").fetchone()[0]
    assert drain(pg_app) == 0
    assert pg_app.require_job(str(job_id)).status is JobStatus.PENDING

    @pg_app.task
    def report() -> str:
        return "done"

    assert drain(pg_app) == 1
    assert pg_app.require_job(str(job_id)).result == "done"


def test_sql_enqueue_gives_a_job_its_registered_tasks_defaults(pg_app: Conveyor, pg_url: str) -> None:
    """The SQL API's enqueue computes a job's options like the Python API: enqueue options, then the task's defaults
    (registered by every worker at start), then the settings' (CONVEYOR_MAX_RETRIES)."""

    @pg_app.task(queue="reports", priority=5, timeout=300, max_retries=7)
    def quarterly() -> None: ...

    pg_app.backend.register_tasks(pg_app.task_infos(), time.time())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        plain = conn.execute("SELECT conveyor.enqueue('quarterly')").fetchone()[0]
        given = conn.execute("SELECT conveyor.enqueue('quarterly', priority => 1, max_retries => 0)").fetchone()[0]
        unknown = conn.execute("SELECT conveyor.enqueue('unregistered')").fetchone()[0]
    python = pg_app.enqueue("quarterly")
    for job_id, expected in [(plain, ("reports", 5, 7, 300.0)), (given, ("reports", 1, 0, 300.0)),
                             (unknown, ("default", 0, 3, None))]:
        job = pg_app.require_job(str(job_id))
        assert (job.queue, job.priority, job.max_retries, job.timeout) == expected
    sql_job = pg_app.require_job(str(plain))
    assert (sql_job.queue, sql_job.priority, sql_job.max_retries, sql_job.timeout) == (
        python.queue, python.priority, python.max_retries, python.timeout)


@pytest.mark.usefixtures("pg_workers")
def test_sql_enqueued_job_is_run_by_a_worker_process(pg_app: Conveyor, workers: Workers, pg_url: str,
                                                     tmp_path: Path) -> None:
    workers.start()
    log = tmp_path / "effects.log"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        job_id = conn.execute("SELECT conveyor.enqueue('effect', jsonb_build_object('n', 42, 'log', %s::text))",
                              (str(log),)).fetchone()[0]
    wait_for(lambda: pg_app.require_job(str(job_id)).status is JobStatus.COMPLETED, 30, what="SQL job done")
    assert pg_app.require_job(str(job_id)).result == 42


# ------------------------------------------------------------------------------------------------ schema, wake-ups
def test_concurrent_migrations_do_not_race(pg_url: str) -> None:
    # A blank database (not the migrated template): four processes' worth of backends migrate it at once.
    name = pg_url.rsplit("/", 1)[1] + "_blank"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    errors: list[BaseException] = []
    backends: list[PostgresBackend] = []

    def start() -> None:
        try:
            backends.append(PostgresBackend(url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        with psycopg.connect(url) as conn:
            versions = conn.execute("SELECT array_agg(version ORDER BY version) FROM conveyor_schema").fetchone()
            assert versions == (list(range(1, SCHEMA_VERSION + 1)),)
    finally:
        for b in backends:
            b.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_idle_worker_wakes_on_notify(pg_app: Conveyor, pg_url: str) -> None:
    """With a poll interval of a minute, only the notification can wake the worker in time."""
    app = Conveyor(pg_url, settings=Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=60.0))
    from tests.backends.test_conformance import running_worker

    try:
        with running_worker(app, concurrency=2):
            time.sleep(0.5)  # let it go idle
            job = pg_app.enqueue("demo.echo", {"n": 1})
            wait_for(lambda: pg_app.require_job(job.id).status is JobStatus.COMPLETED, 20, what="woken by NOTIFY")
    finally:
        app.close()


def test_leader_runs_maintenance_once(pg_url: str) -> None:
    a, b = PostgresBackend(pg_url), PostgresBackend(pg_url)
    try:
        now = time.time()
        assert a.is_leader(now) and not b.is_leader(now)
        assert a.is_leader(now + 1)  # renewals keep it
        assert b.rescue_expired(now + 1) == 0 and b.prune(now, now + 1) == 0  # not the leader: does nothing
        assert b.is_leader(now + 60)  # the leader went quiet: another takes over
        assert not a.is_leader(now + 60)
    finally:
        a.close()
        b.close()


def test_worker_cycles_run_on_an_asyncio_connection_that_survives_losing_it(pg_app: Conveyor) -> None:
    """`finish_and_claim_async`: a cycle on the event loop's own connection; after that connection dies (here: killed
    by the server) the next cycle reconnects by itself; a queue with a limit, or a stale list of such queues, hands
    the cycle back to the locking path in the worker's database thread (None)."""
    backend = pg_app.backend
    assert isinstance(backend, PostgresBackend)
    pg_app.enqueue_many("demo.echo", [{"n": n} for n in range(4)])

    def params(limit: int) -> ClaimParams:
        now = time.time()
        return ClaimParams("w", limit, now, now + 30)

    async def cycles() -> None:
        assert backend._limited_for(params(1)) == []  # a fresh list of limited queues: none
        first = await backend.finish_and_claim_async([], [], time.time(), params(2))
        assert first is not None and len(first[1].jobs) == 2
        conn = backend._loop_conns.conns[asyncio.get_running_loop()]
        with psycopg.connect(pg_app.database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        done = [Completed(job.id, job.lease, {"n": job.args["n"]}) for job in first[1].jobs]
        second = await backend.finish_and_claim_async(done, [], time.time(), params(5))
        assert second is not None and second[0] == [] and len(second[1].jobs) == 2
        assert backend._loop_conns.conns[asyncio.get_running_loop()] is not conn  # a new connection
        pg_app.set_queue("default", concurrency=1)
        backend._limited = (-math.inf, [])  # the list is stale: refreshing it would block the loop
        assert await backend.finish_and_claim_async([], [], time.time(), params(1)) is None
        assert backend._limited_for(params(1)) == ["default"]  # fresh again, and the worker's queue is limited
        assert await backend.finish_and_claim_async([], [], time.time(), params(1)) is None
        await backend.close_async()
        assert conn.closed and not backend._loop_conns.conns

    asyncio.run(cycles())
    assert sum(1 for j in pg_app.list_jobs(limit=10).jobs if j.status is JobStatus.COMPLETED) == 2


# ------------------------------------------------------------------------------------------------ slow
def pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True, timeout=120)
    deadline = time.monotonic() + 60
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False).returncode != 0:
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.serial
@pytest.mark.timeout(240)
@pytest.mark.usefixtures("pg_workers")
def test_database_restart_mid_run(pg_app: Conveyor, workers: Workers, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not Path("/etc/postgresql").is_dir():
        pytest.skip("restarting PostgreSQL needs root and a local pg_ctlcluster cluster")
    log = tmp_path / "effects.log"
    n = 5000
    for offset in range(0, n, 1000):
        # 20 ms a job: 16 slots take about 6 s for the run, so the restart lands in its middle
        batch = [{"n": i, "log": str(log), "seconds": 0.02} for i in range(offset, offset + 1000)]
        pg_app.enqueue_many("effect", batch)
    workers.start(concurrency=8)
    workers.start(concurrency=8)
    wait_for(lambda: pg_app.stats().counts["completed"] >= 500, 60, what="the run under way")
    pg_ctl("restart")
    assert pg_app.stats().counts["completed"] < n, "the run ended before the restart: nothing was tested"

    def completed() -> bool:
        with contextlib.suppress(Exception):
            return pg_app.stats().counts["completed"] == n
        return False

    wait_for(completed, 110, interval=0.5, what="every job completed after the restart")
    assert all(p.poll() is None for p in workers.procs), "a worker died with the database"
    probe = pg_app.enqueue("slow_first", {"seconds": 0, "log": str(tmp_path / "probe.log")})
    wait_for(lambda: pg_app.require_job(probe.id).status is JobStatus.COMPLETED, 10, what="a job after the restart")
    started = pg_app.require_job(probe.id)
    assert started.started_at is not None
    assert (started.started_at - started.created_at).total_seconds() <= 2.0
    counts = pg_app.stats().counts
    assert counts["processing"] == 0 and counts["pending"] == 0 and counts["failed"] == 0
    assert any("PostgreSQL error" in workers.log(p) or "lost its connection" in workers.log(p) for p in workers.procs)
    ran = {line.split()[0] for line in log.read_text().splitlines()}
    assert len(ran) == n  # every job's side effect happened (at least once; the set counts distinct jobs)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("pg_workers")
def test_chaos_random_sigkill_every_two_seconds(pg_app: Conveyor, workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    n = 10_000
    for offset in range(0, n, 1000):
        batch = [{"n": i, "log": str(log), "seconds": 0.001} for i in range(offset, offset + 1000)]
        pg_app.enqueue_many("effect", batch)
    live = [workers.start(concurrency=8) for _ in range(4)]
    kills = 0
    deadline = time.monotonic() + 240
    while pg_app.stats().counts["completed"] < n:
        assert time.monotonic() < deadline, f"stalled: {pg_app.stats().counts}"
        time.sleep(2.0)
        victim = random.choice(live)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        kills += 1
        live[live.index(victim)] = workers.start(concurrency=8)
    counts = pg_app.stats().counts
    assert counts["completed"] == n and counts["processing"] == 0 and counts["failed"] == 0
    effects = [line.split() for line in log.read_text().splitlines()]
    assert {e[0] for e in effects} == {j for j in pg_app.backend.select_ids(pg_app.job_filter(type="effect"))}
    assert kills >= 1


def test_changes_wait_for_an_older_open_transaction(pg_app: Conveyor, pg_url: str) -> None:
    """A change with a smaller id that commits later must not be skipped by a reader that moved past it."""
    start = pg_app.backend.last_change_id()
    with psycopg.connect(pg_url) as conn:
        early = pg_app.enqueue("demo.echo", {"n": "early"}, connection=conn)  # id allocated now, committed later
        late = pg_app.enqueue("demo.echo", {"n": "late"})  # committed at once, with a larger id
        assert pg_app.backend.changes_since(start) == []  # held back while the older transaction is open
        conn.commit()
    # (another transaction anywhere in the cluster, such as a parallel test's, may hold back the later one a moment
    # longer, at most 5 s: wait for both)
    def both() -> list[Any]:
        released = pg_app.backend.changes_since(start)
        return released if len(released) >= 2 else []

    changes = wait_for(both, 15, what="both changes released")
    assert [c.job_id for c in changes] == [early.id, late.id]
    assert pg_app.backend.last_change_id() == changes[-1].id


def test_worker_survives_its_connections_being_killed(pg_app: Conveyor, pg_url: str) -> None:
    """Every server process of the database is terminated (what a restart does to clients): the listener reconnects
    by itself and wakes the worker, pooled connections are replaced, and a new job still starts at once (the poll
    interval is a minute, so only a notification can start it in time)."""
    app = Conveyor(pg_url, settings=Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=60.0))
    from tests.backends.test_conformance import running_worker

    def listener_pids(conn: psycopg.Connection[tuple[object, ...]]) -> set[int]:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()").fetchall()
        return {int(r[0]) for r in rows}

    try:
        with psycopg.connect(pg_url, autocommit=True) as admin, running_worker(app, concurrency=2):
            first = pg_app.enqueue("demo.echo", {"n": 1})
            wait_for(lambda: pg_app.require_job(first.id).status is JobStatus.COMPLETED, 20, what="first job")
            old = wait_for(lambda: listener_pids(admin), 10, what="a listener")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            wait_for(lambda: listener_pids(admin) - old, 10, what="the listener back")  # type: ignore[operator]
            second = pg_app.enqueue("demo.echo", {"n": 2})
            wait_for(lambda: pg_app.require_job(second.id).status is JobStatus.COMPLETED, 10, what="woken again")
    finally:
        app.close()


def test_bursts_of_notifications_are_debounced(pg_url: str) -> None:
    backend = PostgresBackend(pg_url)
    try:
        before = backend.wake_token()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for _ in range(300):
                conn.execute("NOTIFY conveyor_ready")
        wait_for(lambda: backend.wake_token() > before, 10, what="a wake-up")
        time.sleep(0.3)  # the trailing wake of the last burst
        woken = backend.wake_token() - before
        assert 1 <= woken < 150, woken  # far fewer wake-ups than notifications, and never none
        last = backend.wake_token()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("NOTIFY conveyor_ready")  # a lone notification after a pause wakes at once
        wait_for(lambda: backend.wake_token() > last, 5, what="a lone wake-up")
    finally:
        backend.close()


def test_heartbeat_renews_only_the_jobs_the_worker_holds(pg_app: Conveyor) -> None:
    """A claim whose answer was lost (the connection broke at commit) leaves a job claimed under a live worker's id;
    the worker's heartbeat names what it holds, so that job's lease runs out and it is rescued."""
    from conveyor.backends.base import ClaimParams, WorkerBeat

    known = pg_app.enqueue("demo.echo", {"n": 1}, max_retries=2)
    orphan = pg_app.enqueue("demo.echo", {"n": 2}, max_retries=2)
    now = time.time()
    claimed = pg_app.backend.claim_jobs(ClaimParams("w", 2, now, now + 5)).jobs
    assert len(claimed) == 2
    later = now + 4
    pg_app.backend.heartbeat(WorkerBeat("w", "h", 1, None, 2, now, later, later + 5, holding=(known.id,)))
    assert pg_app.backend.rescue_expired(now + 6) == 1
    assert pg_app.require_job(orphan.id).status is JobStatus.PENDING
    assert pg_app.require_job(known.id).status is JobStatus.PROCESSING


def test_a_heartbeat_skips_a_job_another_transaction_holds_instead_of_waiting(pg_app: Conveyor, pg_url: str) -> None:
    """The worker's cycle completes its jobs on one connection while its heartbeat renews their leases on another; the
    renewal once waited for the cycle's row locks (and deadlocked with it, the rows locked in other orders). It skips
    a row held elsewhere; the next beat renews it."""
    from conveyor.backends.base import WorkerBeat

    held, free = pg_app.enqueue("demo.echo", {"n": 1}), pg_app.enqueue("demo.echo", {"n": 2})
    now = time.time()
    assert len(pg_app.backend.claim_jobs(ClaimParams("w", 2, now, now + 5)).jobs) == 2
    later = now + 60
    with psycopg.connect(pg_url) as other:
        other.execute("SELECT 1 FROM conveyor_jobs WHERE id = %s FOR UPDATE", (held.id,))
        beat = threading.Thread(
            target=pg_app.backend.heartbeat, args=(WorkerBeat("w", "h", 1, None, 2, now, later, later + 5),)
        )
        beat.start()
        beat.join(5)
        assert not beat.is_alive(), "the heartbeat waited for the other transaction's row lock"
        other.rollback()
    with psycopg.connect(pg_url) as conn:
        rows = dict(conn.execute("SELECT id::text, lease_expires_at FROM conveyor_jobs").fetchall())
    assert rows[free.id] == later + 5 and rows[held.id] == now + 5, rows
    pg_app.backend.heartbeat(WorkerBeat("w", "h", 1, None, 2, now, later, later + 5))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT lease_expires_at FROM conveyor_jobs WHERE id = %s", (held.id,)).fetchone() == (
            later + 5,)


def test_the_worker_cycle_promotes_a_scheduled_job_once_due_and_only_then(pg_app: Conveyor) -> None:
    """conveyor_work promotes due jobs only when one is due (migration 12 guards the promotion with an index probe):
    before its time the job stays scheduled, at its time the same cycle promotes and claims it."""
    job = pg_app.enqueue("demo.echo", {"n": 1}, delay=5)
    start = time.time()

    def cycle(now: float) -> list[str]:  # one call of conveyor_work (no queue here has limits)
        _lost, result = pg_app.backend.finish_and_claim([], [], now, ClaimParams("w", 10, now, now + 30))
        return [j.id for j in result.jobs]

    assert cycle(start + 1) == []
    assert pg_app.require_job(job.id).status is JobStatus.SCHEDULED
    assert cycle(start + 10) == [job.id]
    history = [(e.from_status, e.to_status) for e in pg_app.job_events(job.id)]
    assert history[-2:] == [(JobStatus.SCHEDULED, JobStatus.PENDING), (JobStatus.PENDING, JobStatus.PROCESSING)]
