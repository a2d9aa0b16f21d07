"""The store in the jobs' PostgreSQL database: a small psycopg pool; words ranked by `ts_rank` over a `tsvector`
column with a GIN index; vectors by pgvector (an HNSW index for 384-dimension models) when `CREATE EXTENSION vector`
works, else by NumPy over a cached matrix, exactly."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from conveyor.errors import BackendError, ConfigError
from conveyor.ingest.store._base import SCHEMA_VERSION, Executor, Ranking, VectorStore, sql_file
from conveyor.ingest.store._matrix import MatrixCache, load_rows, rank

if TYPE_CHECKING:
    from conveyor.ingest.store._model import SearchFilter, Vectors

POOL_MAX = 4
# A keyword query of 2 to PAIRED_MAX_TERMS words first ranks only the chunks holding two of them at least: the few
# that rank high, rather than every chunk holding any one word (on 100,000 chunks of prose, five rare words select
# 13,600 chunks, two of them 760). It changes no answer: `ts_rank` gives a chunk 0.061 to 0.1 for each of the words
# it holds, so a chunk holding two outranks every chunk holding one, and when as many chunks as asked for hold two,
# they are the best; when fewer do, every chunk holding any word is ranked. 8 words make 28 pairs.
PAIRED_MAX_TERMS = 8
STATS_TTL_S = 60.0  # how long the full-text statistics (which ANALYZE changes) are reused


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
        self.matrices = MatrixCache()
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            self.pool = ConnectionPool(dsn, min_size=1, max_size=POOL_MAX, open=True, kwargs={"autocommit": True})
        except psycopg.Error as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {exc}") from exc
        self.pgvector = False
        self._lexeme_stats: tuple[float, dict[str, float]] | None = None
        self.migrate(use_pgvector)

    @property
    def vector_index(self) -> str:  # type: ignore[override]
        return "pgvector" if self.pgvector else "numpy"

    def migrate(self, use_pgvector: bool | None = None) -> None:
        """The first release's tables if missing, then each later version's script once, under an advisory lock
        (two processes starting at once wait for each other); then pgvector, if it can be had."""
        with self._tx() as ex:
            ex.conn.execute(self.q["migrate_lock"])
            ex.conn.execute(sql_file("postgres_schema.sql"))
            ex.run(self.q["init_schema_version"], {})
            version = int(ex.rows(self.q["schema_version"], {})[0]["version"])
            for upgrade in range(version + 1, SCHEMA_VERSION + 1):
                ex.conn.execute(sql_file(f"postgres_v{upgrade}.sql"))
                ex.run(self.q["set_schema_version"], {"version": upgrade})
        if use_pgvector is False:
            return
        try:
            with self._tx() as ex:
                ex.conn.execute(self.q["migrate_lock"])
                ex.conn.execute(self.q["enable_pgvector"])
                ex.conn.execute(self.q["add_pgvector_column"])
                ex.conn.execute(self.q["add_pgvector_index"])
            self.pgvector = True
        except BackendError:
            if use_pgvector:
                raise
            self.pgvector = False

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Executor]:
        psycopg = self._psycopg
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield Executor(conn)
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL error: {exc}") from exc

    _read = _tx

    def _encode_ids(self, ids: list[int]) -> Any:
        return ids

    def _after_insert(self, ex: Executor, namespace: str) -> None:
        if not self.pgvector:
            return
        import numpy as np

        # Fill the pgvector column from the float32 bytes of the rows just written (same transaction).
        rows = ex.tuples(self.q["pgvector_pending"], {"namespace": namespace})
        ex.many(
            self.q["pgvector_set"],
            [{"id": r[0], "vector": _pgvector_text(np.frombuffer(bytes(r[1]), dtype=np.float32))} for r in rows],
        )

    def _vector_ranked(
        self, ex: Executor, namespace: str, row: dict[str, Any], query: Vectors, top_k: int, filters: SearchFilter
    ) -> Ranking:
        if not self.pgvector:
            def load(name: str, params: dict[str, Any]) -> tuple[Any, Any]:
                return load_rows(ex.tuples(self.q[name], params))

            matrix = self.matrices.get(namespace, int(row["version"]), int(row["deletions"]), load)
            allowed = self._allowed_ids(ex, namespace, filters) if filters else None
            return lambda: rank(matrix, query, top_k, allowed)
        import numpy as np

        vector = _pgvector_text(np.asarray(query, dtype=np.float32).reshape(-1))
        name = "pgvector_search_384" if int(row["dimensions"]) == 384 else "pgvector_search"
        params = {"namespace": namespace, "query": vector, "top_k": top_k, **filters.params()}
        found = [(int(r[0]), float(r[1])) for r in ex.tuples(self.q[name], params)]
        return lambda: found

    def _keyword_query(
        self, ex: Executor, terms: list[str], all_required: bool, params: dict[str, Any]
    ) -> list[tuple[int, float]]:
        rank = self._match(terms, all_required)
        if not all_required and 2 <= len(terms) <= PAIRED_MAX_TERMS:
            pairs = " | ".join(f"({a} & {b})" for a, b in itertools.combinations(terms, 2))
            found = self._ranked(ex, {**params, "match": pairs, "rank": rank})
            if len(found) >= int(params["limit"]):
                return found
        return self._ranked(ex, {**params, "match": rank, "rank": rank})

    def _ranked(self, ex: Executor, params: dict[str, Any]) -> list[tuple[int, float]]:
        return [(int(r[0]), float(r[1])) for r in ex.tuples(self.q["keyword_search"], params)]

    def _match(self, terms: list[str], all_required: bool) -> str:
        """A `to_tsquery` text: the words (letters, digits and _ only: none is an operator) joined by | or &."""
        return (" & " if all_required else " | ").join(terms)

    def _common_words(self, ex: Executor, terms: list[str], total: int, cutoff: int) -> set[str]:
        """From the planner's statistics of the tsvector column (ANALYZE keeps the frequencies of the most common
        lexemes; read again at most every STATS_TTL_S): a count through the GIN index would read every matching
        row. Before the first ANALYZE, none."""
        now = time.monotonic()
        if self._lexeme_stats is None or now - self._lexeme_stats[0] > STATS_TTL_S:
            rows = ex.rows(self.q["common_lexemes"], {})
            self._lexeme_stats = (now, {str(r["lexeme"]): float(r["freq"]) for r in rows})
        frequencies = self._lexeme_stats[1]
        if not frequencies:
            return set()
        fraction = cutoff / total
        lexemes = ex.rows(self.q["lexemes_of"], {"words": terms})
        return {str(r["word"]) for r in lexemes if frequencies.get(str(r["lexeme"]), 0.0) > fraction}

    def close(self) -> None:
        self.pool.close()


def _pgvector_text(vector: Any) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"
