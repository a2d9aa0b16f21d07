"""Every query a backend names exists in its dialect's .sql file, every file parses, migrations have no gaps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.backends.queries import load_migrations, load_queries, parse_queries

BACKENDS = Path(__file__).resolve().parents[2] / "conveyor" / "backends"
USES = re.compile(r"""tx\.(?:execute|executemany|rows|dicts)\(\s*"(\w+)\"|_delete_in_batches\(\s*"(\w+)\"""")
SHARED = ["sql_backend.py", "limits.py", "driver.py"]
OWN = {"sqlite": ["sqlite/backend.py", "sqlite/driver.py"],
       "postgres": ["postgres/backend.py", "postgres/driver.py", "postgres/leader.py", "postgres/work.py"]}


def _used(files: list[str]) -> set[str]:
    return {a or b for f in files for a, b in USES.findall((BACKENDS / f).read_text())}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_named_query_exists(dialect: str) -> None:
    shared, own = _used(SHARED), _used(OWN[dialect])
    assert shared and own, "no query names found: the pattern is stale"
    missing = (shared | own) - set(load_queries(dialect))
    assert not missing, f"missing from {dialect}/queries.sql: {missing}"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_migrations_are_numbered_without_gaps(dialect: str) -> None:
    files = sorted(p.name for p in (BACKENDS / dialect / "migrations").glob("*.sql"))
    assert [f[:4] for f in files] == [f"{n:03d}_" for n in range(1, len(files) + 1)]
    assert len(load_migrations(dialect)) == len(files)
    assert all(text.strip() for text in load_migrations(dialect))


def test_duplicate_query_names_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
