"""The SQLite backend: the shared SQL backend over the SQLite driver, plus what only SQLite does: outcomes written
statement by statement in the writer's transaction, and a change token read from the file's `data_version` (SQLite
has no LISTEN/NOTIFY: idle workers poll it every few milliseconds, which costs no query plan and no lock)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from conveyor.backends.driver import Tx, dumps, run_migrations
from conveyor.backends.params import Cancelled, Completed, Failed, Outcome, ProgressUpdate, Released
from conveyor.backends.queries import load_migrations
from conveyor.backends.sql_backend import SQLBackend
from conveyor.backends.sqlite.driver import SQLiteDriver, backend_error

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

    def _finish(
        self, tx: Tx, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float
    ) -> list[str]:
        if progress:
            tx.executemany("write_progress", [self._progress_row(u, now) for u in progress])
        lost: list[str] = []
        for outcome in outcomes:
            guard = {"id": outcome.job_id, "worker_id": outcome.lease.worker_id, "attempt": outcome.lease.attempt,
                     "now": now}
            match outcome:
                case Completed(result=result):
                    changed = tx.execute("complete_job", {**guard, "result": dumps(result)})
                case Failed(error=error, detail=detail, retry_at=retry_at):
                    changed = tx.execute("fail_job", {**guard, "error": error, "detail": detail, "retry_at": retry_at})
                case Cancelled(reason=reason):
                    changed = tx.execute("cancel_running_job", {**guard, "reason": reason})
                case Released(reason=reason):
                    changed = tx.execute("release_job", {**guard, "reason": reason})
            if changed == 0:
                lost.append(outcome.job_id)
        return lost

    @staticmethod
    def _progress_row(update: ProgressUpdate, now: float) -> dict[str, object]:
        return {
            "id": update.job_id,
            "worker_id": update.lease.worker_id,
            "attempt": update.lease.attempt,
            "progress": update.progress,
            "info": dumps(update.info) if update.info is not None else None,
            "now": now,
        }
