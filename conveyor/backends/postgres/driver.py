"""The PostgreSQL driver: psycopg 3 with a connection pool. A call runs on a pooled connection; a connection found
dead (the database restarted) is replaced and the call tried once more, but only while nothing can have committed."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from conveyor.backends.driver import Params
from conveyor.backends.queries import load_queries
from conveyor.errors import BackendError, ConfigError

log = logging.getLogger("conveyor.postgres")
T = TypeVar("T")
POOL_MAX_SIZE = 8
POOL_TIMEOUT_S = 30.0  # how long a call waits for a connection (covers a database restart)
CONNECT_TIMEOUT_S = 5.0  # how long reaching the server may take at start (CONVEYOR_CONNECT_TIMEOUT_S)


def conninfo(url: str) -> str:
    """`postgres://` and `postgresql+psycopg://` are accepted spellings of `postgresql://`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not (scheme in {"postgres", "postgresql"} or scheme.startswith("postgresql+")):
        raise ConfigError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql://{rest}"


def connection_of(handle: Any) -> psycopg.Connection[Any]:
    """The psycopg connection behind what a caller passed as `connection=`: a connection, a transaction or a cursor."""
    if isinstance(handle, psycopg.Connection):
        return handle
    if isinstance(handle, psycopg.Transaction | psycopg.Cursor):
        return handle.connection
    raise ConfigError(
        f"connection= takes a psycopg (sync) Connection, Transaction or Cursor, not {type(handle).__name__}"
    )


def _reason(exc: psycopg.OperationalError) -> str:
    """libpq's message, shortened to its cause: 'connection refused', 'database "x" does not exist', ..."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cause = text.rsplit("failed: ", 1)[-1].strip()
    cause = cause.removeprefix("FATAL:").strip()
    return cause[:1].lower() + cause[1:] if cause else text


def connection_lost(exc: psycopg.OperationalError) -> bool:
    """Whether the error means the server went away (restart, network), not a failed statement."""
    return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))


class PostgresTx:
    __slots__ = ("conn", "queries")

    def __init__(self, conn: psycopg.Connection[Any], queries: dict[str, str]) -> None:
        self.conn = conn
        self.queries = queries

    def execute(self, query: str, params: Params | None = None) -> int:
        return self.conn.execute(self.queries[query], params).rowcount

    def executemany(self, query: str, rows: Sequence[Params]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self.queries[query], rows)

    def rows(self, query: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(self.queries[query], params).fetchall()

    def dicts(self, query: str, params: Params | None = None) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(self.queries[query], params).fetchall()

    def script(self, sql: str) -> None:
        self.conn.execute(sql.encode())  # no parameters: the simple protocol runs every statement of the script


class PostgresDriver:
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        pool_max_size: int = POOL_MAX_SIZE,
        queries: dict[str, str] | None = None,
        connect_timeout_s: float | None = None,
    ) -> None:
        self.url = url
        self.conninfo = conninfo(url)
        self.queries = queries if queries is not None else load_queries("postgres")
        timeout = connect_timeout_s or CONNECT_TIMEOUT_S
        self._first_connect(timeout)  # one clear error, before the pool's background attempts log theirs
        try:
            self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=pool_max_size,
                kwargs={"autocommit": True},
                timeout=POOL_TIMEOUT_S,
                name="conveyor",
                open=False,
            )
            self.pool.open(wait=True, timeout=timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {self.where}: {exc}") from None

    @property
    def where(self) -> str:
        """The server as people say it (`host:port/database`), never the password."""
        try:
            parts = conninfo_to_dict(self.conninfo)
        except psycopg.Error:
            return "the configured server"
        host = parts.get("host") or "localhost"
        port = parts.get("port") or "5432"
        return f"{host}:{port}" + (f"/{parts['dbname']}" if parts.get("dbname") else "")

    def _first_connect(self, timeout: float) -> None:
        """Open one connection with a deadline: an unreachable server is one line (`connection refused`, `timeout
        expired`, `password authentication failed ...`), not the pool's retries and warnings."""
        deadline = max(2, math.ceil(timeout))  # libpq's connect_timeout: whole seconds, at least 2
        try:
            psycopg.connect(self.conninfo, connect_timeout=deadline).close()
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {self.where}: {_reason(exc)}") from None

    def run(self, fn: Callable[[psycopg.Connection[Any]], T], *, transaction: bool = True) -> T:
        """Run `fn` on a pooled connection (in a transaction unless `transaction` is off). A connection found dead is
        replaced and `fn` run once more, but only when it failed before its transaction could commit."""
        for attempt in (1, 2):
            body_done = False
            try:
                with self.pool.connection() as conn:
                    if transaction:
                        with conn.transaction():
                            result = fn(conn)
                            body_done = True
                    else:
                        result = fn(conn)
                        body_done = True
                    return result
            except psycopg.OperationalError as exc:
                if attempt == 1 and not body_done and connection_lost(exc):
                    self.pool.check()
                    continue
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            except psycopg.Error as exc:
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            except PoolTimeout as exc:
                raise BackendError(f"no PostgreSQL connection: {exc}") from exc
        raise AssertionError("unreachable")

    def write(self, fn: Callable[[PostgresTx], T], *, relaxed: bool = False) -> T:
        def go(conn: psycopg.Connection[Any]) -> T:
            tx = PostgresTx(conn, self.queries)
            if relaxed:
                tx.execute("relaxed_commit")
            return fn(tx)

        return self.run(go)

    def write_statement(self, query: str, params: Params) -> list[tuple[Any, ...]]:
        """One statement that is its own transaction (autocommit: one round trip instead of BEGIN, it, COMMIT);
        returns its rows. Only for a write that is a single statement: it commits when it returns."""
        def go(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            conn.autocommit = True
            try:
                return PostgresTx(conn, self.queries).rows(query, params)
            finally:
                conn.autocommit = False

        return self.run(go, transaction=False)

    def read(self, fn: Callable[[PostgresTx], T]) -> T:
        return self.run(lambda conn: fn(PostgresTx(conn, self.queries)), transaction=False)

    def in_callers(self, connection: Any, fn: Callable[[PostgresTx], T]) -> T:
        """Run `fn` in the caller's own transaction (`connection=`: a psycopg connection, transaction or cursor)."""
        conn = connection_of(connection)
        tx = PostgresTx(conn, self.queries)
        try:
            if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
                # The insert opens the caller's transaction (as any statement would): it commits or rolls back
                # with the caller's `commit()`/`rollback()`. A transaction block here would commit it at once.
                return fn(tx)
            with conn.transaction():  # a savepoint in the caller's transaction block (or, in autocommit
                return fn(tx)  # mode outside one, a transaction of its own)
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL error: {exc}") from exc

    @staticmethod
    def array(values: Sequence[Any] | None) -> list[Any] | None:
        return None if values is None else list(values)

    @staticmethod
    def decode(value: Any) -> Any:
        return value  # psycopg decodes json and jsonb itself

    def close(self) -> None:
        self.pool.close()
