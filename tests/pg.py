"""Fresh PostgreSQL databases for tests: each one a copy of a template migrated once per test session.

`CREATE DATABASE ... TEMPLATE` copies a few megabytes of files, much faster than migrating every database. Names carry
the pytest process id, so several sessions (and other projects' tests) can share one server.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
_lock = threading.Lock()
_counter = itertools.count(1)
_template: str | None = None
RECONNECT_S = 30.0  # how long to wait for a server that is not answering (restarting) before giving up


def _base(admin_url: str) -> str:
    return admin_url.rsplit("/", 1)[0]


def _admin(admin_url: str):  # type: ignore[no-untyped-def]
    import psycopg

    deadline = time.monotonic() + RECONNECT_S
    while True:
        try:
            return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if time.monotonic() < deadline:  # a server restarting (a test of ours, or of a neighbour) comes back
                time.sleep(0.5)
                continue
            message = f"PostgreSQL is not reachable at {admin_url}: {exc}"
            if IN_CI:
                pytest.fail(f"{message} (CI=true: the PostgreSQL suite is required; .ci/run starts the server)")
            pytest.skip(message)


def _admin_execute(admin_url: str, *statements: str) -> None:
    """Run statements on a fresh admin connection, once more if the server went away meanwhile (a restart)."""
    import psycopg

    for attempt in (1, 2):
        try:
            with _admin(admin_url) as conn:
                for statement in statements:
                    conn.execute(statement)
            return
        except psycopg.OperationalError:
            if attempt == 2:
                raise
            time.sleep(1.0)


def _ensure_template(admin_url: str) -> str:
    global _template
    with _lock:
        if _template is not None:
            return _template
        from conveyor.backends.postgres import PostgresBackend

        name = f"conveyor_tmpl_{os.getpid()}"
        with _admin(admin_url) as conn:
            _drop_orphans(conn)
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        backend = PostgresBackend(f"{_base(admin_url)}/{name}")  # migrates
        backend.close()
        atexit.register(_drop, admin_url, name)
        _template = name
        return name


def _drop_orphans(conn) -> None:  # type: ignore[no-untyped-def]
    """Databases left behind by test sessions that were killed (their process is gone)."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'conveyor\\_test\\_%' OR datname LIKE 'conveyor\\_tmpl\\_%'"
    ).fetchall()
    for (name,) in rows:
        pid = int(name.split("_")[2])
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(Exception):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop(admin_url: str, name: str) -> None:
    with contextlib.suppress(Exception), _admin(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Yield the URL of a new, migrated database; drop it afterwards."""
    template = _ensure_template(admin_url)
    name = f"conveyor_test_{os.getpid()}_{next(_counter)}"
    _admin_execute(
        admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}" TEMPLATE "{template}"'
    )
    try:
        yield f"{_base(admin_url)}/{name}"
    finally:
        _drop(admin_url, name)


@contextlib.contextmanager
def empty_database(admin_url: str, label: str = "empty") -> Iterator[str]:
    """Yield the URL of a new database with nothing in it (not migrated); drop it afterwards."""
    name = f"conveyor_test_{os.getpid()}_{label}_{next(_counter)}"
    _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    try:
        yield f"{_base(admin_url)}/{name}"
    finally:
        _drop(admin_url, name)
