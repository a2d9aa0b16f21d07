"""Loads a dialect's queries from `sql/<dialect>.sql`: each query under a `-- name: <query>` header."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(line for line in body.strip().splitlines() if not line.lstrip().startswith("--"))
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = sql.strip().rstrip(";")
    return queries


@cache
def load_queries(dialect: str) -> dict[str, str]:
    return parse_queries(sql_text(f"{dialect}.sql"))


@cache
def sql_text(filename: str) -> str:
    return resources.files("conveyor.backends").joinpath("sql", filename).read_text(encoding="utf-8")
