"""SQLite under contention: eight worker processes and a `conveyor serve` (with its own worker) on one file, 20,000
jobs, the REST API under a steady load of about 200 requests a second and the CLI used meanwhile. No "database is
locked" (nor any other database error) reaches a user or a job, nothing is lost, and no completed job ran twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.conftest import wait_for
from tests.faults import tasks
from tests.faults.conftest import Procs
from tests.faults.load import ApiLoad
from tests.faults.tasks import APP

JOBS = 20_000
RATE = 200.0  # API requests per second


def stored(db: Path) -> dict[str, tuple[str, int, str | None]]:
    """Every job's status, attempts and error, read straight from the file."""
    conn = sqlite3.connect(db)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT id, status, attempts, error FROM conveyor_jobs")}
    finally:
        conn.close()


class CliUser:
    """Someone running `conveyor enqueue` and `conveyor jobs list` every few seconds while the system is busy."""

    def __init__(self, procs: Procs, url: str, log: str) -> None:
        self.procs, self.url, self.log = procs, url, log
        self.failures: list[str] = []
        self.enqueued: list[str] = []
        self.runs = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(2.0):
            n += 1
            args = json.dumps({"log": self.log, "i": 900_000 + n})
            for command in (["enqueue", "record", "--db", self.url, "--app", APP, "--args", args],
                            ["jobs", "list", "--db", self.url, "--limit", "5", "--json"]):
                out = self.procs.run(*command, timeout=120)
                self.runs += 1
                if out.returncode != 0:
                    self.failures.append(f"{command[0]}: exit {out.returncode}: {out.stderr.strip()[-300:]}")
                elif command[0] == "enqueue":
                    self.enqueued.append(out.stdout.strip())


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_eight_workers_and_a_busy_server_on_one_file(procs: Procs, tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    url = f"sqlite:///{db}"
    log = str(tmp_path / "effects.log")
    app = Conveyor(url)
    app.tasks.update(tasks.app.tasks)
    try:
        for offset in range(0, JOBS, 1000):
            # 0.1 s of work each: about half a minute of 8 x 8 + 10 slots busy, under the API's load
            app.enqueue_many("record", [{"log": log, "i": i, "seconds": 0.1} for i in range(offset, offset + 1000)])
    finally:
        app.close()

    env = procs.env(CONVEYOR_LEASE_S="30")
    workers = procs.start("worker", "--db", url, "--app", APP, "--processes", "8", "--concurrency", "8", env=env)
    server = procs.serve("--db", url, "--app", APP, env=env)
    cli = CliUser(procs, url, log)
    cli.thread.start()
    began = time.monotonic()

    def first_jobs_done() -> bool:
        statuses = Counter(s for s, _, _ in stored(db).values())
        return statuses["completed"] + statuses["cancelled"] >= JOBS

    load = ApiLoad(server.url, lambda n: {"log": log, "i": 100_000 + n}, rate=RATE)
    report = asyncio.run(load.run(first_jobs_done, deadline_s=900))
    elapsed = time.monotonic() - began
    cli.stop.set()
    cli.thread.join(180)
    wal = db.with_name("conveyor.db-wal")
    print(f"{elapsed:.0f}s for {JOBS} jobs under load: {report.summary()}, {cli.runs} CLI runs; "
          f"file {db.stat().st_size >> 20} MiB, WAL {wal.stat().st_size >> 20} MiB")

    def all_done() -> bool:
        return all(s in ("completed", "cancelled") for s, _, _ in stored(db).values())

    wait_for(all_done, 120, 0.5, what="every job done")
    jobs = stored(db)
    locked = [line for p in procs.started for line in p.log().splitlines() if "database is locked" in line]
    assert report.server_errors == [], report.server_errors[:10]
    assert report.stream_errors == [] and report.events > 0, report.stream_errors[:10]
    assert cli.failures == [], cli.failures[:10]
    assert not [j for j, (s, _, e) in jobs.items() if s == "failed" or (e and "locked" in e)]
    # nothing lost: every job accepted by any path is there, and nothing else
    assert len(jobs) == JOBS + len(report.enqueued) + len(cli.enqueued)
    assert set(report.enqueued) | set(cli.enqueued) <= set(jobs)
    assert all(jobs[j][0] == "cancelled" for j in report.cancelled)  # an acknowledged cancel holds
    # no completed job ran twice, and each ran its side effect once
    ran = Counter(e[0] for e in tasks.effects(log))
    completed = {j for j, (s, _, _) in jobs.items() if s == "completed"}
    assert {j for j in completed if ran[j] != 1} == set()
    assert set(ran) <= set(jobs) and all(n == 1 for n in ran.values())
    assert {a for j, (s, a, _) in jobs.items() if s == "completed"} == {1}
    assert workers.alive() and server.alive()
    assert "restarting" not in workers.log(), workers.log()[-2000:]
    assert locked == [], locked[:10]
