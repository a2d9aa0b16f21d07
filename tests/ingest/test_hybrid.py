"""Keyword and hybrid search in the store, on SQLite and PostgreSQL: what each list finds, fusion, filters, and
that replacing or deleting a source leaves no trace in either index. Also the upgrade of a store written by 0.1.0."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.ingest.chunk import make_chunks
from conveyor.ingest.embed import HashingEmbedder
from conveyor.ingest.fusion import fuse
from conveyor.ingest.store import SCHEMA_VERSION, NewChunks, PostgresStore, SearchFilter, SQLiteStore, VectorStore

FIXTURES = Path(__file__).parent / "fixtures"
EMBEDDER = HashingEmbedder()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("pgvector", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    made: VectorStore
    if request.param == "sqlite":
        made = SQLiteStore(str(tmp_path / "store.db"))
    else:
        # pgvector where the server has it (None: use it if CREATE EXTENSION works), else the exact NumPy scan
        made = PostgresStore(request.getfixturevalue("raw_pg_url"), use_pgvector=None if request.param == "pgvector"
                             else False)
    if request.param == "pgvector" and made.vector_index != "pgvector":
        made.close()
        pytest.skip("this PostgreSQL server has no pgvector extension")
    yield made
    made.close()


def add(store: VectorStore, source_id: str, kind: str, text: str, meta: dict[str, object] | None = None) -> None:
    if store.get_source(source_id) is None:
        store.insert_source(source_id, "ns", source_id, kind)
    chunks = make_chunks(text, size=80, overlap=0)
    vectors = EMBEDDER.embed([c.text for c in chunks])
    store.replace_chunks(source_id, NewChunks(chunks, vectors, EMBEDDER.name, [meta or {}] * len(chunks)))


def search(store: VectorStore, query: str, mode: str = "hybrid", top_k: int = 5,
           filters: SearchFilter | None = None) -> list[dict[str, object]]:
    vector = EMBEDDER.embed([query])[0]
    return store.search("ns", vector, top_k, EMBEDDER.name, text=query, mode=mode, filters=filters or SearchFilter())


def corpus(store: VectorStore) -> None:
    add(store, "kettles", "text", "Copper kettles whistle when the water boils.", {"room": "kitchen"})
    add(store, "otters", "file", "Sea otters hold hands while they sleep.\n\nOtters eat sea urchins.",
        {"file_type": "pdf"})
    add(store, "glaciers", "website", "Glaciers carve valleys over thousands of years.", {"url": "https://ice.example/"})


def test_keyword_finds_words_and_stems_and_says_so(store: VectorStore) -> None:
    corpus(store)
    hits = search(store, "sleeping otter", mode="keyword")  # stemming: sleeping ~ sleep, otter ~ otters
    assert hits and hits[0]["source_id"] == "otters" and hits[0]["text"].startswith("Sea otters")  # type: ignore[union-attr]
    assert all(h["matched"] == ["keyword"] for h in hits)
    assert all(0 < h["score"] < 1 for h in hits)  # type: ignore[operator]
    assert search(store, "zeppelin", mode="keyword") == []
    # words that are operators in the full-text syntax are only words
    for odd in ('otters AND "sleep', "NEAR(otters sleep)", "otters*", "-otters", "sleep: OR ^", "'; DROP TABLE x"):
        search(store, odd, mode="keyword")


def test_hybrid_fuses_both_lists(store: VectorStore) -> None:
    corpus(store)
    vector_only = search(store, "copper kettles whistle", mode="vector")
    assert all(h["matched"] == ["vector"] for h in vector_only)
    hits = search(store, "copper kettles whistle")
    assert hits[0]["source_id"] == "kettles" and hits[0]["matched"] == ["vector", "keyword"]
    assert hits[0]["score"] == pytest.approx(2 / 61, abs=1e-6)  # first in both lists: 1/(60+1) twice
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)  # type: ignore[type-var]
    assert len({h["chunk_id"] for h in hits}) == len(hits)


def test_filters_by_source_kind_and_metadata(store: VectorStore) -> None:
    corpus(store)
    for mode in ("hybrid", "vector", "keyword"):
        only = search(store, "otters glaciers kettles", mode, filters=SearchFilter(source_ids=("glaciers",)))
        assert {h["source_id"] for h in only} == {"glaciers"}, mode
        by_kind = search(store, "otters glaciers kettles", mode, filters=SearchFilter(kinds=("file", "text")))
        assert {h["source_id"] for h in by_kind} == {"otters", "kettles"}, mode
        by_meta = search(store, "otters glaciers kettles", mode, filters=SearchFilter(metadata={"file_type": "pdf"}))
        assert {h["source_id"] for h in by_meta} == {"otters"}, mode
        assert search(store, "otters", mode, filters=SearchFilter(metadata={"file_type": "docx"})) == []


def test_replacing_and_deleting_leave_no_trace_in_either_index(store: VectorStore) -> None:
    corpus(store)
    add(store, "otters", "file", "Sea otters hold hands while they sleep.\n\nOtters eat sea urchins.")  # again
    for mode in ("keyword", "vector", "hybrid"):
        hits = search(store, "sea otters sleep urchins", mode, top_k=10)
        otters = [h["text"] for h in hits if h["source_id"] == "otters"]
        assert len(otters) == 1, (mode, otters)  # its one chunk, not twice
    add(store, "otters", "file", "Beavers build dams of branches and mud.")
    assert search(store, "urchins", mode="keyword") == []
    assert store.delete_source("otters")
    for mode in ("keyword", "vector", "hybrid"):
        assert "otters" not in {h["source_id"] for h in search(store, "beavers dams", mode, top_k=10)}, mode


def test_fusion_needs_only_ranks() -> None:
    fused = fuse({"vector": [(1, 0.9), (2, 0.8), (3, 0.1)], "keyword": [(3, 12.0), (4, 3.0)]}, top_k=3)
    assert [f.chunk_id for f in fused] == [3, 1, 2]  # found by both lists: above either list's first
    assert fused[0].matched == ["vector", "keyword"] and fused[1].matched == ["vector"]


# ------------------------------------------------------------------------------------------ upgrade from 0.1.0
def _check_upgraded(store: VectorStore) -> None:
    sources = {s.id: s for s in store.list_sources()}
    assert set(sources) == {"v1-source-0", "v1-source-1", "v1-source-2"}
    assert all(s.status == "ready" and s.chunk_count >= 2 for s in sources.values())
    assert store.load_checkpoint("v1-source-2") == {
        "frontier": [], "seen": ["https://birds.example/"], "pages": 1,
    }
    query = "where does conveyor store jobs"
    vector = EMBEDDER.embed([query])[0]
    for mode in ("keyword", "vector", "hybrid"):
        hits = store.search("docs", vector, 3, EMBEDDER.name, text=query, mode=mode)
        assert str(hits[0]["text"]).startswith("Conveyor stores jobs in SQLite by default."), mode
    birds = store.search("birds", None, 1, EMBEDDER.name, text="puffin burrows", mode="keyword")
    assert birds[0]["url"] == "https://birds.example/" and birds[0]["source_kind"] == "website"
    add(store, "new-after-upgrade", "text", "Kingfishers dive for minnows.")  # ns "ns": a new namespace
    assert search(store, "kingfishers", mode="keyword")[0]["source_id"] == "new-after-upgrade"
    assert store.delete_source("v1-source-0")
    assert all(h["source_id"] != "v1-source-0"
               for h in store.search("docs", vector, 5, EMBEDDER.name, text=query, mode="keyword"))


def test_sqlite_store_of_release_0_1_0_is_upgraded_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "store_v1_sqlite.sql").read_text())
    store = SQLiteStore(str(path))
    try:
        _check_upgraded(store)
    finally:
        store.close()
    again = SQLiteStore(str(path))  # opening an upgraded store changes nothing
    try:
        with again._read() as ex:
            assert ex.rows(again.q["schema_version"], {})[0]["version"] == SCHEMA_VERSION
        assert {s.id for s in again.list_sources()} == {"v1-source-1", "v1-source-2", "new-after-upgrade"}
    finally:
        again.close()


@pytest.mark.postgres
def test_postgres_store_of_release_0_1_0_is_upgraded_without_loss(raw_pg_url: str, tmp_path: Path) -> None:
    """The 0.1.0 tables (that release's schema file), filled with the rows of the SQLite fixture, then upgraded."""
    import psycopg

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.executescript((FIXTURES / "store_v1_sqlite.sql").read_text())
        tables = {t: conn.execute(f"SELECT * FROM {t}").fetchall()
                  for t in ("ingest_sources", "ingest_namespaces", "ingest_chunks", "ingest_crawl_state")}
    with psycopg.connect(raw_pg_url, autocommit=True) as pg:
        pg.execute((FIXTURES / "store_v1_postgres_schema.sql").read_text())
        for table, rows in tables.items():
            for row in rows:
                marks = ", ".join(["%s"] * len(row))
                pg.execute(f"INSERT INTO {table} VALUES ({marks})", row)
        pg.execute("SELECT setval('ingest_chunks_id_seq', (SELECT max(id) FROM ingest_chunks))")
    store = PostgresStore(raw_pg_url, use_pgvector=False)
    try:
        _check_upgraded(store)
    finally:
        store.close()


def test_common_words_select_no_chunks_by_themselves(store: VectorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A word in most chunks (here more than 2 of 12) would rank nearly the whole index for nothing: the rare words
    of the query select the chunks; a query of common words only needs all of them."""
    import conveyor.ingest.store._base as base

    for i in range(10):
        add(store, f"otter-{i}", "text", f"Otters swim in river number {i}.")
    add(store, "urchins", "text", "Otters eat sea urchins on their bellies.")
    add(store, "rivers", "text", "Rivers swim with trout.")
    if isinstance(store, PostgresStore):  # its cutoff reads the statistics ANALYZE (autovacuum) keeps
        with store._tx() as ex:
            ex.conn.execute("ANALYZE ingest_chunks")
    monkeypatch.setattr(base, "COMMON_MIN_CHUNKS", 2)
    with store._read() as ex:
        assert store._keyword_terms(ex, "otters urchins") == (["urchins"], False)
    hits = search(store, "otters urchins", mode="keyword", top_k=20)
    assert [h["source_id"] for h in hits] == ["urchins"]
    both = search(store, "otters swim", mode="keyword", top_k=20)  # both common: chunks with both words
    assert {h["source_id"] for h in both} == {f"otter-{i}" for i in range(10)}
    # in hybrid search, common words only are left to the vector list
    assert all(h["matched"] == ["vector"] for h in search(store, "otters swim", mode="hybrid", top_k=20))
    assert search(store, "otters urchins", mode="hybrid")[0]["matched"] == ["vector", "keyword"]
    monkeypatch.setattr(base, "COMMON_MIN_CHUNKS", 1000)  # a small index: every word selects
    assert len(search(store, "otters urchins", mode="keyword", top_k=20)) == 11

