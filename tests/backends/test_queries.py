"""Every query a backend names exists in its dialect's .sql file, and every file parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.backends.queries import load_queries, parse_queries, sql_text

BACKENDS = Path(__file__).resolve().parents[2] / "conveyor" / "backends"
USES = re.compile(r"""Q\["(\w+)"\]|_(?:query|dicts|delete_in_batches)\(\s*"(\w+)\"""")


@pytest.mark.parametrize(("module", "dialect"), [("sqlite.py", "sqlite"), ("postgres.py", "postgres")])
def test_every_named_query_exists(module: str, dialect: str) -> None:
    used = {a or b for a, b in USES.findall((BACKENDS / module).read_text())}
    assert used, "no query names found: the pattern is stale"
    assert used <= set(load_queries(dialect)), f"missing from {dialect}.sql: {used - set(load_queries(dialect))}"


def test_postgres_migrations_are_numbered_without_gaps() -> None:
    from conveyor.backends.postgres import SCHEMA_VERSION

    files = sorted(p.name for p in (BACKENDS / "sql").glob("postgres_migration_*.sql"))
    assert files == [f"postgres_migration_{n:03d}.sql" for n in range(1, SCHEMA_VERSION + 1)]
    for name in files:
        assert sql_text(name).strip()


def test_duplicate_query_names_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
