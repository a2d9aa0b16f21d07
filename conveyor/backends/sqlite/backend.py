"""The SQLite backend: the shared SQL backend over the SQLite driver, plus what only SQLite does: outcomes written
statement by statement in the writer's transaction, and a change token read from the file's `data_version` (SQLite
has no LISTEN/NOTIFY: idle workers poll it every few milliseconds, which costs no query plan and no lock)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from conveyor.backends.driver import Tx, dumps, run_migrations
from conveyor.backends.params import Cancelled, Completed, Failed, Outcome, ProgressUpdate, Released
from conveyor.backends.queries import load_migrations
from conveyor.backends.sql_backend import SQLBackend
from conveyor.backends.sqlite.driver import SQLiteDriver
from conveyor.errors import BackendError

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
                raise BackendError(f"SQLite error: {exc}") from exc

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

