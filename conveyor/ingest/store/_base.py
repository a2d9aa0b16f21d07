"""Sources, chunks and their vectors, in the jobs' own database (SQLite file or PostgreSQL): the dialect-neutral
part of the store. Subclasses give the connection plumbing and the vector ranking they can do best.

A search ranks chunks by cosine similarity to the query vector (`vector`), by full-text relevance to the query's
words (`keyword`: FTS5 BM25 on SQLite, `ts_rank` on PostgreSQL), or by both fused with reciprocal rank fusion
(`hybrid`). One namespace holds the vectors of one embedding model only.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from conveyor.backends.queries import parse_queries
from conveyor.ingest.errors import ModelMismatchError, SourceNotFoundError
from conveyor.ingest.fusion import fuse
from conveyor.ingest.store._model import (
    NO_FILTER,
    SEARCH_MODES,
    NewChunks,
    SearchFilter,
    Source,
    dumps,
    result_row,
)

if TYPE_CHECKING:
    from conveyor.ingest.store._model import Vectors

MAX_LIST = 1000
SCHEMA_VERSION = 3  # 1: the first release's tables; 2: full-text index (FTS5 / tsvector); 3: PostgreSQL column storage
Ranking = Callable[[], list[tuple[int, float]]]
_RANKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="conveyor-ingest-rank")
FUSION_CANDIDATES = 50  # each list's depth before fusion (at least top_k)
# A query word in more chunks than this is common (Elasticsearch's "common terms" cutoff): it selects no chunks by
# itself, since BM25 weighs it near zero and matching it would rank most of the index; when all words are common,
# chunks must hold all of them.
COMMON_MIN_CHUNKS = 1000
COMMON_FRACTION = 0.05
# In hybrid search the vector list answers for meaning and the keyword list for exact rare terms (names, codes):
# there a word is common from 1% of the chunks on, and a query of common words only has no keyword list (requiring
# them all would rank a large part of the index for words BM25 weighs near zero).
COMMON_FRACTION_HYBRID = 0.01
_WORD = re.compile(r"\w+")
# Words too common to tell chunks apart, left out of the full-text query: Snowball's English stop words, the list
# PostgreSQL's `english` configuration drops too (BM25 would weigh them near zero, but each costs a pass over most of
# the index).
STOP_WORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself "
    "it its itself they them their theirs themselves what which who whom this that these those am is are was were be "
    "been being have has had having do does did doing a an the and but if or because as until while of at by for "
    "with about against between into through during before after above below to from up down in out on off over "
    "under again further then once here there when where why how all any both each few more most other some such no "
    "nor not only own same so than too very s t can will just don should now".split()
)


@cache
def sql_file(filename: str) -> str:
    return resources.files("conveyor.ingest").joinpath("sql", filename).read_text(encoding="utf-8")


@cache
def queries(dialect: str) -> dict[str, str]:
    return parse_queries(sql_file(f"{dialect}.sql"))


class Executor:
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


class VectorStore:
    """Dialect-neutral logic; subclasses give `_tx` (a transaction yielding an executor) and `_read`."""

    dialect = ""
    vector_index = ""  # what ranks vectors: "numpy" (exact, in memory) or "pgvector"

    def __init__(self) -> None:
        self.q = queries(self.dialect)

    # ---------------------------------------------------------------------------------- dialect plumbing
    def _tx(self) -> contextlib.AbstractContextManager[Executor]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Executor]:
        raise NotImplementedError

    def _after_insert(self, ex: Executor, namespace: str) -> None:
        """A hook for pgvector: fill the vector column of new rows."""

    def _vector_ranked(
        self, ex: Executor, namespace: str, row: dict[str, Any], query: Vectors, top_k: int, filters: SearchFilter
    ) -> Ranking:
        """What ranks the vectors, called in another thread (it must not use `ex`)."""
        raise NotImplementedError

    def _match(self, terms: list[str], all_required: bool) -> str:
        """The dialect's full-text query for words: any of them, or all."""
        raise NotImplementedError

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
            "id": source_id, "namespace": namespace, "name": name, "kind": kind, "status": "pending",
            "location": location, "options": dumps(options or {}), "job_id": None,
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
        return Source.from_row(rows[0]) if rows else None

    def list_sources(self, namespace: str | None = None, limit: int = MAX_LIST) -> list[Source]:
        with self._read() as ex:
            rows = ex.rows(self.q["list_sources"], {"namespace": namespace, "limit": max(1, min(limit, MAX_LIST))})
        return [Source.from_row(r) for r in rows]

    def find_source(self, namespace: str, kind: str, name: str) -> Source | None:
        with self._read() as ex:
            rows = ex.rows(self.q["find_source"], {"namespace": namespace, "kind": kind, "name": name})
        return Source.from_row(rows[0]) if rows else None

    def reset_source(
        self, source: Source, *, location: str | None, options: dict[str, Any], status: str = "pending",
        error: str | None = None, job_id: str | None = None,
    ) -> None:
        """Point a source at new content (its chunks stay until its next job replaces them); a crawl starts over."""
        params = {
            "id": source.id, "location": location, "options": dumps(options), "status": status, "error": error,
            "job_id": job_id, "now": time.time(),
        }
        with self._tx() as ex:
            ex.run(self.q["reset_source"], params)
            ex.run(self.q["delete_crawl_state"], {"id": source.id})

    def set_status(self, source_id: str, status: str, error: str | None = None) -> None:
        with self._tx() as ex:
            ex.run(self.q["set_status"], {"id": source_id, "status": status, "error": error, "now": time.time()})

    def set_job(self, source_id: str, job_id: str) -> None:
        with self._tx() as ex:
            ex.run(self.q["set_job"], {"id": source_id, "job_id": job_id, "now": time.time()})

    def delete_source(self, source_id: str) -> bool:
        """Delete the source's chunks (from the vector and the full-text index), its crawl state, then the source;
        False if it was not there."""
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

    def append_chunks(
        self, source_id: str, new: NewChunks, checkpoint: dict[str, Any] | None = None, *, replace: bool = False,
        once: bool = False,
    ) -> int:
        """Add chunks (of one crawled page) and save the crawl checkpoint in the same transaction; `replace` first
        deletes the source's chunks (the first page of a crawl that starts over); `once` adds nothing when the
        source already has the first of these chunks (a page's step run again)."""
        with self._tx() as ex:
            namespace = self._claim_namespace(ex, source_id, new)
            if replace and ex.count(self.q["delete_chunks_of_source"], {"id": source_id}):
                ex.run(self.q["bump_deletions"], {"namespace": namespace})
            if once and new.chunks and ex.rows(self.q["has_chunk"], {"id": source_id,
                                                                     "chunk_index": new.chunks[0].index})[0]["stored"]:
                return int(ex.rows(self.q["get_source"], {"id": source_id})[0]["chunk_count"])
            if new.chunks:
                self._insert(ex, source_id, namespace, new)
            if checkpoint is not None:
                ex.run(self.q["save_crawl_state"], {"id": source_id, "state": dumps(checkpoint), "now": time.time()})
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

    def _claim_namespace(self, ex: Executor, source_id: str, new: NewChunks) -> str:
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

    def _insert(self, ex: Executor, source_id: str, namespace: str, new: NewChunks) -> None:
        import numpy as np

        now = time.time()
        vectors = np.ascontiguousarray(new.vectors, dtype=np.float32)
        metadata = list(new.metadata) or [{}] * len(new.chunks)
        rows = [
            {
                "source_id": source_id, "namespace": namespace, "chunk_index": c.index, "text": c.text,
                "char_count": c.char_count, "word_count": c.word_count, "metadata": dumps(meta),
                "embedding": vectors[i].tobytes(), "now": now,
            }
            for i, (c, meta) in enumerate(zip(new.chunks, metadata, strict=True))
        ]
        ex.many(self.q["insert_chunk"], rows)
        self._after_insert(ex, namespace)

    def _finish_write(self, ex: Executor, source_id: str, namespace: str) -> int:
        ex.run(self.q["bump_namespace"], {"namespace": namespace})
        ex.run(self.q["refresh_chunk_count"], {"id": source_id, "now": time.time()})
        return int(ex.rows(self.q["get_source"], {"id": source_id})[0]["chunk_count"])

    # ---------------------------------------------------------------------------------- search
    def namespace_model(self, namespace: str) -> tuple[str, int] | None:
        with self._read() as ex:
            rows = ex.rows(self.q["get_namespace"], {"namespace": namespace})
        return (str(rows[0]["model"]), int(rows[0]["dimensions"])) if rows else None

    def search(
        self,
        namespace: str,
        query: Vectors | None,
        top_k: int,
        model: str,
        *,
        text: str = "",
        mode: str = "vector",
        filters: SearchFilter = NO_FILTER,
    ) -> list[dict[str, Any]]:
        """The `top_k` chunks nearest the query, nearest first, with their metadata as flat fields, `score` and
        `matched` (the lists that found each: `vector`, `keyword`)."""
        if mode not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {SEARCH_MODES}, not {mode!r}")
        depth = top_k if mode != "hybrid" else max(top_k, FUSION_CANDIDATES)
        lists: dict[str, list[tuple[int, float]]] = {}
        vector: Future[list[tuple[int, float]]] | None = None
        with self._read() as ex:
            rows = ex.rows(self.q["get_namespace"], {"namespace": namespace})
            if not rows:
                return []
            if mode in ("vector", "hybrid"):
                if rows[0]["model"] != model:
                    raise ModelMismatchError(namespace, str(rows[0]["model"]), model)
                assert query is not None
                # ranked by another thread while the full-text query runs (both release the GIL)
                vector = _RANKERS.submit(self._vector_ranked(ex, namespace, rows[0], query, depth, filters))
            if mode in ("keyword", "hybrid"):
                lists["keyword"] = self._keyword_ranked(ex, namespace, text, depth, filters, hybrid=mode == "hybrid")
        if vector is not None:  # awaited with the connection released: searches of one process overlap
            lists = {"vector": vector.result(), **lists}
        if mode == "hybrid":
            ranked = [(f.chunk_id, f.score, f.matched) for f in fuse(lists, top_k)]
        elif mode == "vector":
            ranked = [(i, score, ["vector"]) for i, score in lists["vector"]]
        else:  # full-text relevance is unbounded: r / (1 + r) keeps the order and stays in [0, 1)
            ranked = [(i, score / (1.0 + score), ["keyword"]) for i, score in lists["keyword"]]
        return self._details(ranked)

    def _keyword_ranked(
        self, ex: Executor, namespace: str, text: str, depth: int, filters: SearchFilter, *, hybrid: bool = False
    ) -> list[tuple[int, float]]:
        terms, all_required = self._keyword_terms(ex, text, COMMON_FRACTION_HYBRID if hybrid else COMMON_FRACTION)
        if not terms or (hybrid and all_required):
            return []
        params = {"namespace": namespace, "limit": depth, **filters.params()}
        return self._keyword_query(ex, terms, all_required, params)

    def _keyword_query(
        self, ex: Executor, terms: list[str], all_required: bool, params: dict[str, Any]
    ) -> list[tuple[int, float]]:
        """The best `params["limit"]` chunks holding any of the words (all of them when `all_required`)."""
        params = {**params, "match": self._match(terms, all_required)}
        return [(int(r[0]), float(r[1])) for r in ex.tuples(self.q["keyword_search"], params)]

    def _keyword_terms(
        self, ex: Executor, text: str, fraction: float = COMMON_FRACTION
    ) -> tuple[list[str], bool]:
        """The query's rare words (any of which selects a chunk); if it has none, its common words, all required."""
        terms = words(text)
        total = int(ex.rows(self.q["fts_total"], {})[0]["chunks"]) if terms else 0
        cutoff = max(COMMON_MIN_CHUNKS, int(total * fraction))
        if total <= cutoff:
            return terms, False
        common = self._common_words(ex, terms, total, cutoff)
        rare = [t for t in terms if t not in common]
        return (rare, False) if rare else (terms, True)

    def _common_words(self, ex: Executor, terms: list[str], total: int, cutoff: int) -> set[str]:
        """Those of the words that are in more than `cutoff` of the `total` chunks."""
        raise NotImplementedError

    def _allowed_ids(self, ex: Executor, namespace: str, filters: SearchFilter) -> Any:
        import numpy as np

        rows = ex.tuples(self.q["filtered_chunk_ids"], {"namespace": namespace, **filters.params()})
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _details(self, ranked: list[tuple[int, float, list[str]]]) -> list[dict[str, Any]]:
        if not ranked:
            return []
        ids = [chunk_id for chunk_id, _, _ in ranked]
        with self._read() as ex:
            details = {r["id"]: r for r in ex.rows(self.q["chunks_by_ids"], {"ids": self._encode_ids(ids)})}
        # a chunk deleted between the ranking and this read is left out
        return [result_row(details[i], score, matched) for i, score, matched in ranked if i in details]

    def _encode_ids(self, ids: list[int]) -> Any:
        return dumps(ids)


def words(text: str) -> list[str]:
    """The distinct words of a query, in order, for the full-text match (stop words left out, unless the query has
    nothing else)."""
    found = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    return [w for w in found if w not in STOP_WORDS] or found
