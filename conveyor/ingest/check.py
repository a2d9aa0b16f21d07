"""What `conveyor check` and the dashboard say about ingestion: the embedder in use (or the hashing fallback and
what to install) and what ranks vectors and words in this database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CheckLine:
    level: str  # "ok", "warn" or "error"
    message: str


def ingest_checks(database_url: str) -> list[CheckLine]:
    from conveyor.errors import ConveyorError
    from conveyor.ingest.embed import embedder_status
    from conveyor.ingest.store import PostgresStore, open_store

    status = embedder_status()
    lines = [CheckLine("ok" if status.semantic else "warn", f"embeddings: {status.message}")]
    try:
        store = open_store(database_url)
    except ConveyorError as exc:
        return [*lines, CheckLine("error", f"ingestion store: {exc.message}")]
    keyword = "PostgreSQL full text (ts_rank)" if isinstance(store, PostgresStore) else "SQLite FTS5 (BM25)"
    vectors = {"numpy": "exact NumPy scan of a cached matrix", "pgvector": "pgvector (HNSW for 384 dimensions)"}
    lines.append(CheckLine("ok", f"search: vectors by {vectors[store.vector_index]}, words by {keyword}"))
    return lines


def print_ingest_checks(database_url: str, say: Callable[[str], None]) -> None:
    """The lines as `conveyor check` prints them (`say` is the console's print): the hook the CLI calls."""
    from rich.markup import escape

    colour = {"ok": "green", "warn": "yellow", "error": "red"}
    for line in ingest_checks(database_url):
        say(f"[{colour[line.level]}]{line.level}[/] {escape(line.message)}")
