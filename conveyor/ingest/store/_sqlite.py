"""The store in the jobs' SQLite file: its own connection, WAL mode, writes in `BEGIN IMMEDIATE`; vectors ranked by
NumPy over a cached matrix, words by FTS5 with BM25.

sqlite-vec is not used: this needs `enable_load_extension` on Python's own `sqlite3`, which many builds (pyenv's
among them) lack, and loading it through a second SQLite library (sqlean-py, apsw) in the same process as the jobs'
connections to the same file risks corrupting it (POSIX locks are per process: one library's close releases the
other's locks, sqlite.org/howtocorrupt.html section 2.2.1). Its exact scan was also slower than the cached matrix
(bench/README.md).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import BackendError, ConfigError
from conveyor.ingest.store._base import SCHEMA_VERSION, Executor, Ranking, VectorStore, sql_file
from conveyor.ingest.store._matrix import MatrixCache, load_rows, rank

if TYPE_CHECKING:
    from conveyor.ingest.store._model import SearchFilter, Vectors

BUSY_TIMEOUT_S = 30.0


def _statements(script: str) -> Iterator[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


class SQLiteStore(VectorStore):
    """Own connection to the jobs' SQLite file, WAL mode; writes in `BEGIN IMMEDIATE`."""

    dialect = "sqlite"
    vector_index = "numpy"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.matrices = MatrixCache()
        if path != ":memory:" and not Path(path).expanduser().resolve().parent.is_dir():
            raise ConfigError(f"cannot open {path!r}: its directory does not exist")
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite database {path!r}: {exc}") from exc
        self.migrate()

    def migrate(self) -> None:
        """The first release's tables if missing, then each later version's script once, in one transaction."""
        with self._tx() as ex:
            for statement in _statements(sql_file("sqlite_schema.sql")):
                ex.conn.execute(statement)
            ex.run(self.q["init_schema_version"], {})
            version = int(ex.rows(self.q["schema_version"], {})[0]["version"])
            for upgrade in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(sql_file(f"sqlite_v{upgrade}.sql")):
                    ex.conn.execute(statement)
                ex.run(self.q["set_schema_version"], {"version": upgrade})

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Executor]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Executor(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[Executor]:
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    yield Executor(self._conn)
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    def _vector_ranked(
        self, ex: Executor, namespace: str, row: dict[str, Any], query: Vectors, top_k: int, filters: SearchFilter
    ) -> Ranking:
        def load(name: str, params: dict[str, Any]) -> tuple[Any, Any]:
            return load_rows(ex.tuples(self.q[name], params))

        matrix = self.matrices.get(namespace, int(row["version"]), int(row["deletions"]), load)
        allowed = self._allowed_ids(ex, namespace, filters) if filters else None
        return lambda: rank(matrix, query, top_k, allowed)

    def _match(self, terms: list[str], all_required: bool) -> str:
        """An FTS5 query: the words, each quoted (so that no word is read as an operator), OR-ed or AND-ed."""
        return (" AND " if all_required else " OR ").join('"' + t.replace('"', '""') + '"' for t in terms)

    def _common_words(self, ex: Executor, terms: list[str], total: int, cutoff: int) -> set[str]:
        """Counted in the index, each up to the cutoff (cheap: postings only, no ranking)."""
        common = set()
        for term in terms:
            found = ex.rows(self.q["term_frequency"], {"term": self._match([term], False), "cap": cutoff + 1})
            if int(found[0]["chunks"]) > cutoff:
                common.add(term)
        return common

    def close(self) -> None:
        with self._lock:
            self._conn.close()
