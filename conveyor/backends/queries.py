"""A dialect's SQL: its queries (every `<dialect>/*.sql` file, one per noun: `queries.sql` for jobs, queues and
workers, `workflows.sql`, ...; each query under a `-- name: <query>` header, names unique across the files, loaded
once) and its numbered migrations (`<dialect>/migrations/NNN_<what>.sql`)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{3})_\w+\.sql$")


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(line for line in body.strip().splitlines() if not line.lstrip().startswith("--"))
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = sql.strip().rstrip(";")
    return queries


def _folder(package: str, dialect: str) -> Traversable:
    return resources.files(package).joinpath(dialect)


@cache
def load_queries(dialect: str, package: str = "conveyor.backends") -> dict[str, str]:
    queries: dict[str, str] = {}
    files = sorted((f for f in _folder(package, dialect).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    for entry in files:
        found = parse_queries(entry.read_text(encoding="utf-8"))
        twice = set(found) & set(queries)
        if twice:
            raise ValueError(f"queries defined twice in {dialect}: {sorted(twice)} (again in {entry.name})")
        queries.update(found)
    return queries


@cache
def load_migrations(dialect: str, package: str = "conveyor.backends") -> tuple[str, ...]:
    """The dialect's migrations in order: element `i` upgrades a schema of version `i` to version `i + 1`. Files are
    numbered from 001 without gaps (a gap is a packaging error, refused here rather than skipped)."""
    folder = _folder(package, dialect).joinpath("migrations")
    found = {int(m.group(1)): entry for entry in folder.iterdir() if (m := _MIGRATION.match(entry.name))}
    expected = list(range(1, len(found) + 1))
    if sorted(found) != expected:
        raise ValueError(f"{package}.{dialect} migrations are not numbered 001..{len(found):03d}: {sorted(found)}")
    return tuple(found[n].read_text(encoding="utf-8") for n in expected)
