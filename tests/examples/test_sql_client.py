"""examples/sql_client: a client that knows only SQL (psql) enqueues, watches and cancels jobs on PostgreSQL; a
Python worker process runs them."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from tests.conftest import IN_CI
from tests.examples.conftest import Processes

if shutil.which("psql") is None:
    if IN_CI:
        raise RuntimeError("psql is missing and CI must run the SQL client example")
    pytest.skip("psql is not installed", allow_module_level=True)


def test_sql_client_enqueues_in_its_transaction_and_watches_jobs(pg_url: str, processes: Processes) -> None:
    # pg_url first: the worker stops (processes' teardown) before its database is dropped
    processes.env["CONVEYOR_DATABASE_URL"] = pg_url
    processes.env["DATABASE_URL"] = pg_url

    def client(*args: str) -> str:
        return processes.run("sql_client", "sh", "client.sh", *args).strip()

    job_id = client("order", "ada@example.org", "a book")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        order_id = conn.execute("SELECT id FROM orders WHERE email = 'ada@example.org'").fetchone()[0]  # type: ignore[index]
        assert conn.execute("SELECT status, tags FROM conveyor.jobs WHERE id = %s", [job_id]).fetchone() == (
            "pending", [f"order:{order_id}"]
        )
    processes.worker("sql_client", "tasks:app", "--db", pg_url)
    assert client("wait", job_id) == f'completed {{"receipt": "R-{order_id:06d}", "sent_to": "ada@example.org"}}'
    assert client("history", job_id).splitlines() == ["- pending", "pending processing", "processing completed"]

    later = client("remind", "bob@example.org")
    assert client("cancel", later) == "cancelled"
    assert client("wait", later) == "cancelled"
