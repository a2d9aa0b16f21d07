"""Upgrades: a database written by an earlier release, opened by today's code, loses nothing and keeps working.

Each release keeps its fixture databases under `tests/fixtures/releases/<version>/` (see the README there): a SQLite
file and a `pg_dump` of a PostgreSQL database that the release's own code created and wrote, and beside each a JSON
record of every row and of what that release's API returned. The old release's worker is stopped before the upgrade
(its last heartbeat and leases are in the fixture, long expired): today's code migrates a database nobody else is
using, or that several of today's processes open at once. The tests compare the fixture's data, not a schema version,
so they cover whatever migrations exist: a new migration that loses or changes a stored value fails them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobContext, JobStatus
from conveyor.backends.queries import load_migrations
from conveyor.settings import Settings
from conveyor.worker.maintenance import CHANGES_KEEP_S
from tests.backends.test_conformance import running_worker
from tests.conftest import IN_CI, PG_ADMIN_URL, wait_for

ROOT = Path(__file__).resolve().parents[2]
RELEASES_DIR = ROOT / "tests" / "fixtures" / "releases"
RELEASES = sorted(d.name for d in RELEASES_DIR.iterdir() if (d / "sqlite.json").exists())
KEYS = {"conveyor_jobs": "id", "conveyor_job_events": "id", "conveyor_queues": "name", "conveyor_workers": "id",
        "conveyor_schema": "version"}


@dataclass
class OldDatabase:
    release: str
    dialect: str
    url: str
    doc: dict[str, Any]  # what the release's fixture script recorded

    def id_of(self, name: str) -> str:
        return str(self.doc["ids"][name])


def load_postgres_dump(dump: Path, url: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        if IN_CI:
            pytest.fail("psql is missing, and CI must run the PostgreSQL upgrade tests")
        pytest.skip("psql is not installed")
    subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), url], check=True,
                   capture_output=True, timeout=120)


@pytest.fixture(params=[(r, d) for r in RELEASES for d in ("sqlite", "postgres")], ids=lambda p: "-".join(p))
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OldDatabase]:
    release, dialect = request.param
    folder = RELEASES_DIR / release
    doc = json.loads((folder / f"{dialect}.json").read_text())
    if dialect == "sqlite":
        shutil.copy(folder / "sqlite.db", tmp_path / "old.db")
        yield OldDatabase(release, dialect, f"sqlite:///{tmp_path}/old.db", doc)
        return
    from tests.pg import empty_database

    with empty_database(PG_ADMIN_URL, "release") as url:
        load_postgres_dump(folder / "postgres.sql", url)
        yield OldDatabase(release, dialect, url, doc)


def open_app(url: str) -> Conveyor:
    """Today's app, with the fixture's task declared as the release declared it."""
    # the fixture ages: its finished jobs must outlive the default retention, whose pruning is tested elsewhere
    app = Conveyor(url, settings=Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1,
                                          retention_days=36500))

    @app.task(name="fixture.work", max_retries=2, timeout=300)
    async def work(ctx: JobContext, n: int, note: str = "") -> dict[str, Any]:
        return {"n": n, "note": note}

    return app


# ------------------------------------------------------------------------------------------------ reading rows
def stored_rows(db: OldDatabase) -> dict[str, list[dict[str, Any]]]:
    """Every row of the release's tables as stored now, in the JSON form the fixture script recorded them."""
    out: dict[str, list[dict[str, Any]]] = {}
    if db.dialect == "sqlite":
        conn = sqlite3.connect(db.url.removeprefix("sqlite:///"))
        conn.row_factory = sqlite3.Row
        try:
            for table, key in KEYS.items():
                out[table] = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        finally:
            conn.close()
    else:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(db.url) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SET TimeZone = 'UTC'")
            for table, key in KEYS.items():
                out[table] = [dict(r) for r in cur.execute(f"SELECT * FROM {table} ORDER BY {key}")]
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def differences(old: list[dict[str, Any]], now: list[dict[str, Any]], key: str) -> list[str]:
    """Each old row's every field, compared with today's row of the same key (new columns are not compared)."""
    found = {row[key]: row for row in now}
    problems = []
    for row in old:
        current = found.get(row[key])
        if current is None:
            problems.append(f"row {row[key]!r} is gone")
            continue
        for column, value in row.items():
            if column not in current:
                problems.append(f"row {row[key]!r}: column {column} is gone")
            elif current[column] != value:
                problems.append(f"row {row[key]!r}: {column} was {value!r}, is {current[column]!r}")
    return problems


def assert_rows_kept(db: OldDatabase, *, only_old: bool = True) -> None:
    """Every row the release wrote is there, field by field; with `only_old`, no other row (nothing duplicated)."""
    rows = stored_rows(db)
    problems: list[str] = []
    for table, key in KEYS.items():
        problems += [f"{table}: {p}" for p in differences(db.doc["rows"][table], rows[table], key)]
        if only_old and table != "conveyor_schema":
            extra = {r[key] for r in rows[table]} - {r[key] for r in db.doc["rows"][table]}
            problems += [f"{table}: unexpected row {k!r}" for k in sorted(extra, key=str)]
    versions = [r["version"] for r in rows["conveyor_schema"]]
    assert versions == list(range(1, len(load_migrations(db.dialect)) + 1)), versions
    assert not problems, "\n".join(problems)


def assert_api_unchanged(app: Conveyor, db: OldDatabase) -> None:
    """Jobs, histories, queues and workers read through today's API: the release's fields, value for value."""
    api = db.doc["api"]
    for name, old in api["jobs"].items():
        job = app.require_job(db.id_of(name)).to_dict()
        assert {k: job.get(k, "<missing>") for k in old} == old, name
    for name, old_events in api["events"].items():
        events = [e.to_dict() for e in app.job_events(db.id_of(name))]
        assert [{k: e.get(k, "<missing>") for k in o} for e, o in zip(events, old_events, strict=True)] == old_events
    queues = {q.name: q.to_dict() for q in app.list_queues()}
    for old in api["queues"]:
        queue = queues[old["name"]]  # a state added since (`waiting`) adds a count: the release's counts must stay
        queue["counts"] = {s: queue["counts"].get(s, "<missing>") for s in old["counts"]}
        assert {k: queue.get(k, "<missing>") for k in old} == old
    workers = {w.id: w.to_dict() for w in app.backend.list_workers(db.doc["now"])}
    assert set(workers) == {w["id"] for w in api["workers"]}
    for old in api["workers"]:
        assert {k: workers[old["id"]].get(k, "<missing>") for k in old} == old


# ------------------------------------------------------------------------------------------------ the tests
def test_a_release_database_opens_with_nothing_lost(old_db: OldDatabase) -> None:
    app = open_app(old_db.url)
    try:
        assert app.backend.dialect == old_db.dialect  # opening it migrates it
        assert_rows_kept(old_db)
        assert_api_unchanged(app, old_db)
        outbox = {c.id for c in app.backend.changes_since(0)}  # live streams still see the release's changes
        assert {e["id"] for e in old_db.doc["rows"]["conveyor_job_events"]} <= outbox
        assert app.backend.last_change_id() == max(outbox)
    finally:
        app.close()


@pytest.mark.timeout(180)
def test_release_jobs_run_after_the_upgrade(old_db: OldDatabase) -> None:
    """Pending jobs complete; the job the stopped worker was running is rescued after its lease and runs again; its
    cancelled twin ends cancelled; a retried job runs on its fresh budget; paused queues and unique keys hold."""
    app = open_app(old_db.url)
    try:
        scheduled = app.enqueue("fixture.work", {"n": 99}, unique_key="report:2100")  # the release's open job
        assert scheduled.id == old_db.id_of("scheduled") and scheduled.existing
        expected = {
            "pending": (JobStatus.COMPLETED, 1), "pending_echo": (JobStatus.COMPLETED, 1),
            "pending_reports": (JobStatus.COMPLETED, 1), "released": (JobStatus.COMPLETED, 2),
            "retried_pending": (JobStatus.COMPLETED, 2), "retry_waiting": (JobStatus.COMPLETED, 2),
            "stale_processing": (JobStatus.COMPLETED, 2), "cancel_requested": (JobStatus.CANCELLED, 1),
        }

        def state() -> dict[str, tuple[JobStatus, int]]:
            jobs = {name: app.require_job(old_db.id_of(name)) for name in expected}
            return {name: (job.status, job.attempts) for name, job in jobs.items()}

        with running_worker(app, concurrency=4):
            wait_for(lambda: state() == expected, 60, 0.1, what=f"the release's jobs to run (expected {expected})")
        assert state() == expected
        assert app.require_job(old_db.id_of("pending")).result == {"n": 11, "note": "ünïcode ✓"}
        assert app.require_job(old_db.id_of("pending_echo")).result == {"hello": "world"}
        rescued = [(e.from_status, e.to_status, e.message) for e in app.job_events(old_db.id_of("stale_processing"))]
        assert (JobStatus.PROCESSING, JobStatus.PENDING, "lease expired (worker lost)") in rescued
        for name in ("pending_paused", "scheduled"):  # a paused queue, a job due in 2100: untouched
            job, old = app.require_job(old_db.id_of(name)).to_dict(), old_db.doc["api"]["jobs"][name]
            assert {k: job.get(k) for k in old} == old
        paused = app.enqueue("demo.echo", {"n": 0}, queue="paused", unique_key="paused-once")
        assert paused.id == old_db.id_of("pending_paused") and paused.existing
        # every row of the release is still there (the jobs that ran changed, as they had to)
        ran = {old_db.id_of(name) for name in expected}
        # (rate-limit windows and dead workers move on; the change outbox, rows without a `to_status`, is pruned
        # after CHANGES_KEEP_S by design, and the fixture's rows are older than that once the fixture is)
        keep = {**old_db.doc["rows"], "conveyor_jobs": [r for r in old_db.doc["rows"]["conveyor_jobs"]
                                                        if r["id"] not in ran],
                "conveyor_job_events": [r for r in old_db.doc["rows"]["conveyor_job_events"]
                                        if r["to_status"] is not None or r["at"] >= time.time() - CHANGES_KEEP_S],
                "conveyor_queues": [], "conveyor_workers": []}
        assert_rows_kept(OldDatabase(old_db.release, old_db.dialect, old_db.url, {**old_db.doc, "rows": keep}),
                         only_old=False)
    finally:
        app.close()


MIGRATE_AT_ONCE = """
import sys, time
from pathlib import Path
from conveyor import Conveyor

url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
app = Conveyor(url)
print(len(app.list_jobs(limit=1000).jobs))
app.close()
"""


@pytest.mark.timeout(120)
def test_two_processes_migrating_at_once_never_corrupt_it(old_db: OldDatabase, tmp_path: Path) -> None:
    """Two processes of today's code open the old release's database at the same moment: both migrate it (one waits
    for the other's lock), both succeed, every migration is recorded once and every row the release wrote is there
    once."""
    go, ready = tmp_path / "go", [tmp_path / f"ready-{i}" for i in range(2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_AT_ONCE, old_db.url, str(r), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ready]
    try:  # both have started Python and imported Conveyor: they open the database together
        wait_for(lambda: all(r.exists() for r in ready), 60, 0.01, what="both processes ready")
        go.touch()
        outputs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    jobs = len(old_db.doc["rows"]["conveyor_jobs"])
    assert [out.strip() for out, _ in outputs] == [str(jobs), str(jobs)], outputs
    assert_rows_kept(old_db)
