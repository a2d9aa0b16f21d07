"""The SQLite driver: one file in WAL mode, one connection per process that every read and write of the process takes
in turn (SQLite has a single writer), writes in `BEGIN IMMEDIATE` so that they queue for the file's write lock up front
instead of failing halfway through."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from conveyor.backends.driver import Params, dumps
from conveyor.backends.queries import load_queries
from conveyor.errors import BackendError, ConfigError

T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process's write lock before it fails
CACHE_KIB = 65536  # page cache per connection: the hot part of a busy queue stays in memory
MIN_VERSION = (3, 35, 0)  # RETURNING

# SQLite's primary result codes that a user can act on -> (what anyone may be told, what the operator should know)
_CAUSES = {
    5: ("the database is locked by another process", "{path} stayed locked by another process's write"),  # BUSY
    8: ("the database is read-only",  # READONLY
        "{path} is read-only: make it and its directory writable, then restart Conveyor's processes"),
    10: ("the database's disk failed", "an I/O error on {path}"),  # IOERR
    11: ("the database file is corrupt", "{path} is corrupt"),  # CORRUPT
    13: ("the disk holding the database is full", "the disk holding {path} is full"),  # FULL
}


def backend_error(exc: sqlite3.Error, path: str) -> BackendError:
    """A SQLite error as Conveyor reports it: the cause in words (and, as `reason`, in words for anyone), then
    SQLite's own message."""
    code = getattr(exc, "sqlite_errorcode", None)
    cause = _CAUSES.get(code & 0xFF) if isinstance(code, int) else None
    if cause is None:
        return BackendError(f"SQLite error: {exc}")
    reason, detail = cause
    return BackendError(f"SQLite error: {detail.format(path=path)} ({exc})", reason=reason)


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or `sqlite:///:memory:` -> the path sqlite3 opens."""
    if not url.startswith("sqlite://"):
        raise ConfigError(f"not a SQLite URL: {url!r}")
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigError(f"SQLite URL {url!r} names no file: use sqlite:///path/to/file.db")
    return path.split("?", 1)[0]


def split_script(sql: str) -> list[str]:
    """A script's statements (triggers hold semicolons of their own: SQLite itself says where one ends)."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    if pending.strip() and not all(line.strip().startswith("--") for line in pending.strip().splitlines()):
        raise ConfigError(f"incomplete SQL statement at the end of a script: {pending.strip()[:80]!r}")
    return statements


class SQLiteTx:
    __slots__ = ("conn", "queries")

    def __init__(self, conn: sqlite3.Connection, queries: dict[str, str]) -> None:
        self.conn = conn
        self.queries = queries

    def execute(self, query: str, params: Params | None = None) -> int:
        return self.conn.execute(self.queries[query], params or {}).rowcount

    def executemany(self, query: str, rows: Sequence[Params]) -> None:
        self.conn.executemany(self.queries[query], rows)

    def rows(self, query: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(self.queries[query], params or {}).fetchall()

    def dicts(self, query: str, params: Params | None = None) -> list[dict[str, Any]]:
        cur = self.conn.execute(self.queries[query], params or {})
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def script(self, sql: str) -> None:
        for statement in split_script(sql):
            self.conn.execute(statement)


class SQLiteDriver:
    dialect = "sqlite"

    def __init__(self, url: str, queries: dict[str, str] | None = None) -> None:
        if sqlite3.sqlite_version_info < MIN_VERSION:
            raise ConfigError(f"SQLite {sqlite3.sqlite_version} is too old: Conveyor needs 3.35 or newer")
        self.url = url
        self.path = sqlite_path(url)
        self.memory = self.path == ":memory:"
        if not self.memory:
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"cannot open database {url!r}: directory {parent} does not exist")
        self.queries = queries if queries is not None else load_queries("sqlite")
        self.local_writes = 0  # commits by this process (the change token of an in-memory database)
        self._lock = threading.RLock()
        self._conn = self.connect()
        self._tx = SQLiteTx(self._conn, self.queries)

    def connect(self) -> sqlite3.Connection:
        """A connection with the pragmas every connection to the file needs."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a commit survives a crash of any process; only an OS crash or power loss
            # may roll back the last commits. The enqueue rate is an order of magnitude higher than with FULL.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite database {self.url!r}: {self._open_failure(exc)}") from exc
        return conn

    def _open_failure(self, exc: sqlite3.Error) -> str:
        folder = Path(self.path).expanduser().resolve().parent
        if not self.memory and not os.access(folder, os.W_OK):  # WAL mode: SQLite creates two files beside it
            name = Path(self.path).name
            return f"its directory {folder} is read-only, and SQLite must create {name}-wal and {name}-shm there: {exc}"
        return str(exc)

    def write(self, fn: Callable[[SQLiteTx], T], *, relaxed: bool = False) -> T:
        """`relaxed` changes nothing here: in WAL mode with synchronous=NORMAL no commit waits for the disk."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._tx)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                raise backend_error(exc, self.path) from exc
            self.local_writes += 1
            return result

    def write_statement(self, query: str, params: Params) -> int:
        """One statement that is its own transaction (SQLite's autocommit: the same locks and commit as `write`,
        without the two extra calls of BEGIN and COMMIT); returns how many rows it changed."""
        with self._lock:
            try:
                changed = self._tx.execute(query, params)
            except sqlite3.Error as exc:
                raise backend_error(exc, self.path) from exc
            self.local_writes += 1
            return changed

    def _rollback(self) -> None:
        """End a failed transaction. SQLite may have rolled it back itself (a full disk, an I/O error): then there is
        nothing to end, and the error that brought us here, not a failed ROLLBACK, is the one to report."""
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def read(self, fn: Callable[[SQLiteTx], T]) -> T:
        with self._lock:
            try:
                return fn(self._tx)
            except sqlite3.Error as exc:
                raise backend_error(exc, self.path) from exc

    @staticmethod
    def array(values: Sequence[Any] | None) -> str | None:
        return None if values is None else dumps(list(values))

    @staticmethod
    def decode(value: Any) -> Any:
        return None if value is None else json.loads(value)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
