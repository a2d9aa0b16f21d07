"""What the shared SQL backend needs of a database: a driver of a handful of operations.

A driver runs a function in a transaction (`write`) or on a connection for reading (`read`), hands it a `Tx` that
runs the dialect's named queries, and says how a list and a JSON column travel (`array`, `decode`). The dialects'
real differences (COPY, LISTEN/NOTIFY, leader election and the worker-cycle function on PostgreSQL; one writer
connection per process on SQLite) live beside their drivers, not here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from conveyor.errors import ConfigError

T = TypeVar("T")
Params = Mapping[str, Any]

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""JSON text as both dialects store it (and PostgreSQL's jsonb parameters take it)."""


class Tx(Protocol):
    """A connection in a transaction (or, inside `Driver.read`, a connection to read with). Queries are named."""

    def execute(self, query: str, params: Params | None = None) -> int:
        """Run a statement; returns how many rows it changed."""
        ...

    def executemany(self, query: str, rows: Sequence[Params]) -> None: ...

    def rows(self, query: str, params: Params | None = None) -> list[tuple[Any, ...]]: ...

    def dicts(self, query: str, params: Params | None = None) -> list[dict[str, Any]]: ...

    def script(self, sql: str) -> None:
        """Run a script of several statements (a migration)."""
        ...


class Driver(Protocol):
    dialect: str

    def write(self, fn: Callable[[Tx], T], *, relaxed: bool = False) -> T:
        """Run `fn` in a transaction and commit. `relaxed`: the commit need not wait for the disk (a lost commit
        must be harmless: a heartbeat, a claim that is then re-run). Errors come out as `BackendError`."""
        ...

    def read(self, fn: Callable[[Tx], T]) -> T: ...

    def array(self, values: Sequence[Any] | None) -> Any:
        """A list parameter as the dialect's queries take it (None stays None: "no filter")."""
        ...

    def decode(self, value: Any) -> Any:
        """A JSON column's value as Python data."""
        ...

    def close(self) -> None: ...


def run_migrations(driver: Driver, migrations: Sequence[str]) -> None:
    """Apply the migrations the database lacks, in one transaction, under the dialect's migration lock (so two
    processes starting at once never both apply one). Queries: `migration_lock`, `create_schema_table`,
    `schema_version`, `set_schema_version`."""

    def go(tx: Tx) -> None:
        tx.execute("migration_lock")
        tx.execute("create_schema_table")
        version = int(tx.rows("schema_version")[0][0] or 0)
        if version > len(migrations):
            raise ConfigError(
                f"the database has schema version {version}, newer than this Conveyor's {len(migrations)}"
            )
        for step in range(version + 1, len(migrations) + 1):
            tx.script(migrations[step - 1])
            tx.execute("set_schema_version", {"version": step})

    driver.write(go)
