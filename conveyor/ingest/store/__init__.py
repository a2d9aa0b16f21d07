"""The ingestion store: sources, chunks, vectors and the full-text index, in the jobs' own database."""

from __future__ import annotations

import threading

from conveyor.errors import ConfigError
from conveyor.ingest.store._base import MAX_LIST, SCHEMA_VERSION, VectorStore, queries
from conveyor.ingest.store._model import (
    NO_FILTER,
    SEARCH_MODES,
    SOURCE_KINDS,
    SOURCE_STATUSES,
    NewChunks,
    SearchFilter,
    Source,
)
from conveyor.ingest.store._postgres import PostgresStore
from conveyor.ingest.store._sqlite import SQLiteStore

__all__ = [
    "MAX_LIST",
    "NO_FILTER",
    "SCHEMA_VERSION",
    "SEARCH_MODES",
    "SOURCE_KINDS",
    "SOURCE_STATUSES",
    "NewChunks",
    "PostgresStore",
    "SQLiteStore",
    "SearchFilter",
    "Source",
    "VectorStore",
    "close_stores",
    "open_store",
    "queries",
]

_stores: dict[str, VectorStore] = {}
_stores_lock = threading.Lock()


def open_store(database_url: str) -> VectorStore:
    """The store of a database URL, one per process (shared by the API, the CLI and the tasks)."""
    with _stores_lock:
        store = _stores.get(database_url)
        if store is None:
            store = _open(database_url)
            _stores[database_url] = store
        return store


def _open(url: str) -> VectorStore:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from conveyor.backends.sqlite import sqlite_path

        return SQLiteStore(sqlite_path(url))
    if scheme in {"postgresql", "postgres"} or scheme.startswith("postgresql+"):
        return PostgresStore(url)
    raise ConfigError(f"unsupported database URL for ingestion: {url!r}")


def close_stores() -> None:
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
