"""The SQLite backend: the shared SQL backend over the SQLite driver, plus what only SQLite does: outcomes written
statement by statement in the writer's transaction, and a change token read from the file's `data_version` (SQLite
has no LISTEN/NOTIFY: idle workers poll it every few milliseconds, which costs no query plan and no lock)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from conveyor.backends.driver import Tx, dumps, run_migrations
from conveyor.backends.params import Cancelled, Completed, Failed, NewJob, Outcome, ProgressUpdate, Released
from conveyor.backends.queries import load_migrations
from conveyor.backends.sql_backend import SQLBackend, insert_row
from conveyor.backends.sqlite.driver import SQLiteDriver, backend_error
from conveyor.ids import uuid7_many
from conveyor.job import Job

MIGRATIONS = load_migrations("sqlite")
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteBackend(SQLBackend):
    dialect = "sqlite"
    driver: SQLiteDriver

    def __init__(self, url: str) -> None:
        self.driver = SQLiteDriver(url)
        self.url = url
        self.path = self.driver.path
        self.memory = self.driver.memory
        self._poll_lock = threading.Lock()
        self._poll_conn: sqlite3.Connection | None = None if self.memory else self.driver.connect()
        self.migrate()

    def migrate(self) -> None:
        run_migrations(self.driver, MIGRATIONS)

    def close(self) -> None:
        super().close()
        if self._poll_conn is not None:
            with self._poll_lock:
                self._poll_conn.close()

    def change_token(self) -> int:
        if self._poll_conn is None:
            return self.driver.local_writes
        with self._poll_lock:
            try:
                return int(self._poll_conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise backend_error(exc, self.path) from exc

    # ------------------------------------------------------------------------------------------ producing
    def insert_jobs(self, jobs: Sequence[NewJob], now: float, connection: Any = None) -> list[Job]:
        """Without unique keys: one statement for the whole batch (a single job: a statement that commits itself).
        With unique keys, the shared path (a job whose key an open job holds is that job)."""
        if any(j.depends_on for j in jobs):
            return self.insert_graph(jobs, now, connection=connection)
        if connection is not None or not jobs or any(j.unique_key is not None or j.webhook_url for j in jobs):
            return super().insert_jobs(jobs, now, connection)
        created_at = datetime.fromtimestamp(now, UTC)
        if len(jobs) == 1:
            self.driver.write_statement("insert_job", insert_row(jobs[0], now))
            return [jobs[0].as_job(created_at)]
        rows = [
            [j.id, j.type, j.queue, "scheduled" if j.scheduled else "pending", j.priority, j.args, j.max_retries,
             j.timeout, j.run_at, j.tags, j.metadata, j.group_key]
            for j in jobs
        ]
        self.driver.write_statement("insert_jobs_batch", {"batch": dumps(rows), "now": now})
        return [j.as_job(created_at) for j in jobs]

    def insert_many(
        self, template: NewJob, payloads: Sequence[dict[str, Any]], now: float, connection: Any = None
    ) -> list[Job]:
        """A batch of one task with the same options: the options once, the ids and args as one JSON document."""
        if template.depends_on:
            return self.insert_graph(template.batch(payloads), now, connection=connection)
        if connection is not None or template.unique_key is not None or template.webhook_url or len(payloads) < 2:
            return super().insert_many(template, payloads, now, connection)
        created_at = datetime.fromtimestamp(now, UTC)
        ids = uuid7_many(len(payloads))
        params = {
            "type": template.type,
            "queue": template.queue,
            "status": "scheduled" if template.scheduled else "pending",
            "priority": template.priority,
            "max_retries": template.max_retries,
            "timeout": template.timeout,
            "run_at": template.run_at,
            "tags": dumps(template.tags),
            "metadata": dumps(template.metadata),
            "group_key": template.group_key,
            "now": now,
            "batch": dumps(list(zip(ids, payloads, strict=True))),
        }
        self.driver.write_statement("insert_batch", params)
        return template.as_jobs(created_at, ids, payloads)

    # ------------------------------------------------------------------------------------------ working
    def _finish(
        self, tx: Tx, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float
    ) -> list[str]:
        """One statement per kind of outcome for the whole batch (and one for progress): each batch travels as one
        JSON document (a C-speed encode), read with json_each."""
        if progress:
            rows = [[u.job_id, u.lease.worker_id, u.lease.attempt, u.progress, u.info] for u in progress]
            tx.execute("write_progress", {"batch": dumps(rows), "now": now})
        if not outcomes:
            return []
        batches: dict[str, list[list[Any]]] = {}
        for o in outcomes:
            row: list[Any] = [o.job_id, o.lease.worker_id, o.lease.attempt]
            match o:
                case Completed(result=result):
                    row.append(result)
                case Failed(error=error, detail=detail, retry_at=retry_at):
                    row += [error, detail, retry_at]
                case Cancelled(reason=reason) | Released(reason=reason):
                    row.append(reason)
            batches.setdefault(_FINISH_QUERY[type(o)], []).append(row)
        written: set[str] = set()
        for query, rows in batches.items():
            written.update(r[0] for r in tx.rows(query, {"batch": dumps(rows), "now": now}))
        return [o.job_id for o in outcomes if o.job_id not in written]


_FINISH_QUERY: dict[type, str] = {
    Completed: "complete_jobs",
    Failed: "fail_jobs",
    Cancelled: "cancel_running_jobs",
    Released: "release_jobs",
}

