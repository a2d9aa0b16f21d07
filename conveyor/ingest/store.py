"""Sources, chunks and their vectors, in the jobs' own database (SQLite file or PostgreSQL).

Search is exact cosine similarity: NumPy over a per-namespace matrix kept in memory and reloaded when the
namespace's version (bumped by every write, from any process) changes; on PostgreSQL with the pgvector extension
the database ranks instead. One namespace holds the vectors of one embedding model only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.backends.queries import parse_queries
from conveyor.errors import BackendError, ConfigError
from conveyor.ingest.errors import ModelMismatchError, SourceNotFoundError
from conveyor.job import iso, to_datetime

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from conveyor.ingest.chunk import Chunk

    Vectors = npt.NDArray[np.float32]

BUSY_TIMEOUT_S = 30.0
MAX_LIST = 1000
SOURCE_KINDS = ("text", "file", "website")
SOURCE_STATUSES = ("pending", "processing", "ready", "failed")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@cache
def _sql(filename: str) -> str:
    return resources.files("conveyor.ingest").joinpath("sql", filename).read_text(encoding="utf-8")


@cache
def queries(dialect: str) -> dict[str, str]:
    return parse_queries(_sql(f"{dialect}.sql"))


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    namespace: str
    name: str
    kind: str
    status: str
    chunk_count: int
    error: str | None
    location: str | None
    options: dict[str, Any]
    job_id: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The source as the API shows it (SPEC section 5)."""
        out: dict[str, Any] = {
            "id": self.id,
            "namespace": self.namespace,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "chunk_count": self.chunk_count,
            "error": self.error,
            "job_id": self.job_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
        if self.kind == "website":
            out["url"] = self.location
            out["max_pages"] = self.options.get("max_pages")
            out["include_subpages"] = self.options.get("include_subpages")
        return out


def _source(row: dict[str, Any]) -> Source:
    return Source(
        id=row["id"],
        namespace=row["namespace"],
        name=row["name"],
        kind=row["kind"],
        status=row["status"],
        chunk_count=int(row["chunk_count"]),
        error=row["error"],
        location=row["location"],
        options=json.loads(row["options"] or "{}"),
        job_id=row["job_id"],
        created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
        updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
    )


@dataclass
class _Matrix:
    version: int
    deletions: int
    ids: Any  # int64 array, ascending
    vectors: Any  # float32 (n, d)


@dataclass(frozen=True, slots=True)
class NewChunks:
    """Chunks of one source with their vectors and per-chunk metadata (url, title, ...)."""

    chunks: Sequence[Chunk]
    vectors: Vectors
    model: str
    metadata: Sequence[dict[str, Any]] = field(default_factory=list)


class VectorStore:
    """Dialect-neutral logic; subclasses give `_tx` (a transaction yielding an executor) and `_read`."""

    dialect = ""

    def __init__(self) -> None:
        self.q = queries(self.dialect)
        self._matrices: dict[str, _Matrix] = {}
        self._matrix_lock = threading.Lock()

    # ---------------------------------------------------------------------------------- dialect plumbing
    def _tx(self) -> contextlib.AbstractContextManager[_Executor]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[_Executor]:
        raise NotImplementedError

    def _encode_ids(self, ids: list[int]) -> Any:
        raise NotImplementedError

    def _after_insert(self, ex: _Executor, namespace: str) -> None:
        """A hook for pgvector: fill the vector column of new rows."""

    def _ranked(self, ex: _Executor, namespace: str, query: Vectors, top_k: int) -> list[tuple[int, float]] | None:
        """Ids and scores ranked by the database, or None to rank with NumPy."""
        return None

    def close(self) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- sources
    def insert_source(
        self,
        source_id: str,
        namespace: str,
        name: str,
        kind: str,
        *,
        location: str | None = None,
        options: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Source:
        params = {
            "id": source_id,
            "namespace": namespace,
            "name": name,
            "kind": kind,
            "status": "pending",
            "location": location,
            "options": _dumps(options or {}),
            "job_id": None,
            "now": time.time() if now is None else now,
        }
        with self._tx() as ex:
            ex.run(self.q["insert_source"], params)
        source = self.get_source(source_id)
        assert source is not None
        return source

    def get_source(self, source_id: str) -> Source | None:
        with self._read() as ex:
            rows = ex.rows(self.q["get_source"], {"id": source_id})
        return _source(rows[0]) if rows else None

    def list_sources(self, namespace: str | None = None, limit: int = MAX_LIST) -> list[Source]:
        with self._read() as ex:
            rows = ex.rows(self.q["list_sources"], {"namespace": namespace, "limit": max(1, min(limit, MAX_LIST))})
        return [_source(r) for r in rows]

    def set_status(self, source_id: str, status: str, error: str | None = None) -> None:
        with self._tx() as ex:
            ex.run(self.q["set_status"], {"id": source_id, "status": status, "error": error, "now": time.time()})

    def set_job(self, source_id: str, job_id: str) -> None:
        with self._tx() as ex:
            ex.run(self.q["set_job"], {"id": source_id, "job_id": job_id, "now": time.time()})

    def delete_source(self, source_id: str) -> bool:
        """Delete the source's vectors, its crawl state, then the source; False if it was not there."""
        with self._tx() as ex:
            rows = ex.rows(self.q["lock_source"], {"id": source_id})
            if not rows:
                return False
            namespace = rows[0]["namespace"]
            ex.run(self.q["delete_chunks_of_source"], {"id": source_id})
            ex.run(self.q["delete_crawl_state"], {"id": source_id})
            ex.run(self.q["delete_source"], {"id": source_id})
            has = ex.rows(self.q["namespace_has_chunks"], {"namespace": namespace})
            if not next(iter(has[0].values())):
                ex.run(self.q["delete_namespace"], {"namespace": namespace})  # an empty namespace takes any model
            else:
                ex.run(self.q["bump_deletions"], {"namespace": namespace})
                ex.run(self.q["bump_namespace"], {"namespace": namespace})
        return True

    # ---------------------------------------------------------------------------------- chunks
    def replace_chunks(self, source_id: str, new: NewChunks) -> int:
        """Store a source's chunks in place of any it had (a re-run replaces, never duplicates)."""
        with self._tx() as ex:
            namespace = self._claim_namespace(ex, source_id, new)
            if ex.count(self.q["delete_chunks_of_source"], {"id": source_id}):
                ex.run(self.q["bump_deletions"], {"namespace": namespace})
            self._insert(ex, source_id, namespace, new)
            return self._finish_write(ex, source_id, namespace)

    def append_chunks(self, source_id: str, new: NewChunks, checkpoint: dict[str, Any] | None = None) -> int:
        """Add chunks (of one crawled page) and save the crawl checkpoint in the same transaction."""
        with self._tx() as ex:
            namespace = self._claim_namespace(ex, source_id, new)
            if new.chunks:
                self._insert(ex, source_id, namespace, new)
            if checkpoint is not None:
                ex.run(self.q["save_crawl_state"], {"id": source_id, "state": _dumps(checkpoint), "now": time.time()})
            return self._finish_write(ex, source_id, namespace)

    def load_checkpoint(self, source_id: str) -> dict[str, Any] | None:
        with self._read() as ex:
            rows = ex.rows(self.q["get_crawl_state"], {"id": source_id})
        return json.loads(rows[0]["state"]) if rows else None

    def clear_checkpoint(self, source_id: str) -> None:
        with self._tx() as ex:
            ex.run(self.q["delete_crawl_state"], {"id": source_id})

    def source_chunks(self, source_id: str) -> list[dict[str, Any]]:
        with self._read() as ex:
            rows = ex.rows(self.q["source_chunks"], {"id": source_id})
        for row in rows:
            row["metadata"] = json.loads(row["metadata"])
        return rows

    def _claim_namespace(self, ex: _Executor, source_id: str, new: NewChunks) -> str:
        rows = ex.rows(self.q["lock_source"], {"id": source_id})
        if not rows:
            raise SourceNotFoundError(source_id)
        namespace = str(rows[0]["namespace"])
        dims = int(new.vectors.shape[1]) if len(new.vectors.shape) == 2 and new.vectors.shape[0] else 0
        if not new.chunks:
            return namespace
        ex.run(self.q["insert_namespace"], {"namespace": namespace, "model": new.model, "dimensions": dims})
        stored = ex.rows(self.q["lock_namespace"], {"namespace": namespace})[0]
        if stored["model"] != new.model or int(stored["dimensions"]) != dims:
            raise ModelMismatchError(namespace, f"{stored['model']} ({stored['dimensions']} dimensions)", new.model)
        return namespace

    def _insert(self, ex: _Executor, source_id: str, namespace: str, new: NewChunks) -> None:
        import numpy as np

        now = time.time()
        vectors = np.ascontiguousarray(new.vectors, dtype=np.float32)
        metadata = list(new.metadata) or [{}] * len(new.chunks)
        ex.many(
            self.q["insert_chunk"],
            [
                {
                    "source_id": source_id,
                    "namespace": namespace,
                    "chunk_index": c.index,
                    "text": c.text,
                    "char_count": c.char_count,
                    "word_count": c.word_count,
                    "metadata": _dumps(meta),
                    "embedding": vectors[i].tobytes(),
                    "now": now,
                }
                for i, (c, meta) in enumerate(zip(new.chunks, metadata, strict=True))
            ],
        )
        self._after_insert(ex, namespace)

    def _finish_write(self, ex: _Executor, source_id: str, namespace: str) -> int:
        ex.run(self.q["bump_namespace"], {"namespace": namespace})
        ex.run(self.q["refresh_chunk_count"], {"id": source_id, "now": time.time()})
        return int(ex.rows(self.q["get_source"], {"id": source_id})[0]["chunk_count"])

    # ---------------------------------------------------------------------------------- search
    def namespace_model(self, namespace: str) -> tuple[str, int] | None:
        with self._read() as ex:
            rows = ex.rows(self.q["get_namespace"], {"namespace": namespace})
        return (str(rows[0]["model"]), int(rows[0]["dimensions"])) if rows else None

    def search(self, namespace: str, query: Vectors, top_k: int, model: str) -> list[dict[str, Any]]:
        """The `top_k` chunks nearest to the (normalised) query vector, nearest first, with metadata as flat fields."""
        import numpy as np

        matrix: _Matrix | None = None
        with self._read() as ex:
            rows = ex.rows(self.q["get_namespace"], {"namespace": namespace})
            if not rows:
                return []
            if rows[0]["model"] != model:
                raise ModelMismatchError(namespace, str(rows[0]["model"]), model)
            ranked = self._ranked(ex, namespace, query, top_k)
            if ranked is None:
                matrix = self._matrix(ex, namespace, int(rows[0]["version"]), int(rows[0]["deletions"]))
        if matrix is not None:  # ranked outside the connection's lock: searches of one process overlap
            if matrix.vectors.shape[0] == 0:
                return []
            scores = matrix.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
            k = min(top_k, scores.shape[0])
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            ranked = [(int(matrix.ids[i]), float(scores[i])) for i in top]
        if not ranked:
            return []
        with self._read() as ex:
            details = {
                r["id"]: r for r in ex.rows(self.q["chunks_by_ids"], {"ids": self._encode_ids([i for i, _ in ranked])})
            }
        results = []
        for chunk_id, score in ranked:
            row = details.get(chunk_id)
            if row is None:  # deleted between the ranking and the read
                continue
            extra = json.loads(row["metadata"])
            results.append(
                {
                    **extra,
                    "score": round(score, 6),
                    "chunk_id": chunk_id,
                    "source_id": row["source_id"],
                    "source_name": row["source_name"],
                    "source_kind": row["source_kind"],
                    "namespace": row["namespace"],
                    "chunk_index": row["chunk_index"],
                    "text": row["text"],
                    "char_count": row["char_count"],
                    "word_count": row["word_count"],
                    "created_at": iso(to_datetime(row["created_at"])),
                }
            )
        return results

    def _matrix(self, ex: _Executor, namespace: str, version: int, deletions: int) -> _Matrix:
        """The namespace's vectors, cached; after writes without deletions only the new rows are read (writers of
        one namespace are serialised by its row lock, so ids grow in commit order)."""
        import numpy as np

        with self._matrix_lock:
            cached = self._matrices.get(namespace)
        if cached is not None and cached.version == version:
            return cached
        if cached is not None and cached.deletions == deletions and cached.ids.shape[0]:
            after = int(cached.ids[-1])
            ids, vectors = self._load(ex, "namespace_vectors_after", {"namespace": namespace, "after": after})
            if ids.shape[0] and vectors.shape[1] == cached.vectors.shape[1]:
                ids = np.concatenate([cached.ids, ids])
                vectors = np.concatenate([cached.vectors, vectors])
            elif ids.shape[0]:
                ids, vectors = self._load(ex, "namespace_vectors", {"namespace": namespace})
            else:
                ids, vectors = cached.ids, cached.vectors
        else:
            ids, vectors = self._load(ex, "namespace_vectors", {"namespace": namespace})
        matrix = _Matrix(version, deletions, ids, vectors)
        with self._matrix_lock:
            self._matrices[namespace] = matrix
        return matrix

    def _load(self, ex: _Executor, query: str, params: dict[str, Any]) -> tuple[Any, Any]:
        import numpy as np

        rows = ex.tuples(self.q[query], params)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), dtype=np.float32)
        vectors = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return ids, vectors


class _Executor:
    """The few calls the store makes on a connection, the same for both drivers."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def run(self, sql: str, params: dict[str, Any]) -> None:
        self.conn.execute(sql, params)

    def count(self, sql: str, params: dict[str, Any]) -> int:
        """Run a statement; how many rows it changed."""
        return int(self.conn.execute(sql, params).rowcount)

    def many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            cur = self.conn.cursor()
            cur.executemany(sql, rows)

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def tuples(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())


class SQLiteStore(VectorStore):
    """Own connection to the jobs' SQLite file, WAL mode; writes in `BEGIN IMMEDIATE`."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        if path != ":memory:" and not Path(path).expanduser().resolve().parent.is_dir():
            raise ConfigError(f"cannot open {path!r}: its directory does not exist")
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite database {path!r}: {exc}") from exc
        self.migrate()

    def migrate(self) -> None:
        with self._tx() as ex:
            pending = ""
            for line in _sql("sqlite_schema.sql").splitlines(keepends=True):
                pending += line
                if sqlite3.complete_statement(pending):
                    ex.conn.execute(pending)
                    pending = ""

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_Executor]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _Executor(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Executor]:
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    yield _Executor(self._conn)
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    def _encode_ids(self, ids: list[int]) -> Any:
        return _dumps(ids)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore(VectorStore):
    """A psycopg connection pool; pgvector when `CREATE EXTENSION vector` works, else exact NumPy search."""

    dialect = "postgres"

    def __init__(self, url: str, *, use_pgvector: bool | None = None) -> None:
        super().__init__()
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - the postgres extra
            raise ConfigError(f"PostgreSQL needs the postgres extra (psycopg): {exc}") from exc
        self._psycopg = psycopg
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            self.pool = ConnectionPool(dsn, min_size=1, max_size=4, open=True, kwargs={"autocommit": True})
        except psycopg.Error as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {exc}") from exc
        self.pgvector = False
        self.migrate(use_pgvector)

    def migrate(self, use_pgvector: bool | None = None) -> None:
        with self._tx() as ex:
            ex.conn.execute(self.q["migrate_lock"])
            ex.conn.execute(_sql("postgres_schema.sql"))
        if use_pgvector is False:
            return
        try:
            with self._tx() as ex:
                ex.conn.execute(self.q["enable_pgvector"])
                ex.conn.execute(self.q["add_pgvector_column"])
            self.pgvector = True
        except BackendError:
            if use_pgvector:
                raise
            self.pgvector = False

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_Executor]:
        psycopg = self._psycopg
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield _Executor(conn)
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL error: {exc}") from exc

    _read = _tx

    def _encode_ids(self, ids: list[int]) -> Any:
        return ids

    def _after_insert(self, ex: _Executor, namespace: str) -> None:
        if not self.pgvector:
            return
        # Fill the pgvector column from the float32 bytes of the rows just written (same transaction).
        rows = ex.tuples(self.q["pgvector_pending"], {"namespace": namespace})
        import numpy as np

        ex.many(
            self.q["pgvector_set"],
            [{"id": r[0], "vector": _pgvector_text(np.frombuffer(bytes(r[1]), dtype=np.float32))} for r in rows],
        )

    def _ranked(self, ex: _Executor, namespace: str, query: Vectors, top_k: int) -> list[tuple[int, float]] | None:
        if not self.pgvector:
            return None
        import numpy as np

        vector = _pgvector_text(np.asarray(query, dtype=np.float32).reshape(-1))
        rows = ex.tuples(self.q["pgvector_search"], {"namespace": namespace, "query": vector, "top_k": top_k})
        return [(int(r[0]), float(r[1])) for r in rows]

    def close(self) -> None:
        self.pool.close()


def _pgvector_text(vector: Any) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


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
