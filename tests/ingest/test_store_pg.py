"""The vector store on a real PostgreSQL database, with and without pgvector (whichever the server has)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conveyor.ingest.chunk import make_chunks
from conveyor.ingest.embed import HashingEmbedder
from conveyor.ingest.errors import ModelMismatchError, SourceNotFoundError
from conveyor.ingest.store import NewChunks, PostgresStore, SQLiteStore, VectorStore, queries


def test_every_query_exists_for_every_dialect() -> None:
    sqlite, postgres = dict(queries("sqlite")), queries("postgres")
    assert set(sqlite) - set(postgres) == {"term_frequency"}  # PostgreSQL reads common words from its statistics
    sqlite.pop("term_frequency")
    assert set(postgres) - set(sqlite) == {
        "common_lexemes",
        "lexemes_of",
        "pgvector_search",
        "pgvector_set",
        "pgvector_pending",
        "migrate_lock",
        "enable_pgvector",
        "add_pgvector_column",
        "add_pgvector_index",
        "pgvector_search_384",
    }
    for name, sql in sqlite.items():  # the same parameters in both dialects
        assert sorted(set(re.findall(r":(\w+)", sql))) == sorted(set(re.findall(r"%\((\w+)\)s", postgres[name])))


def exercise(store: VectorStore) -> None:
    embedder = HashingEmbedder()
    texts = {
        "a": "Alpacas hum when they are curious.\n\nTheir wool is warmer than sheep wool.",
        "b": "Tectonic plates move about as fast as fingernails grow.",
    }
    ids = {}
    for key, text in texts.items():
        source = store.insert_source(f"src-{key}", "ns", key, "text", location=None, options={})
        chunks = make_chunks(text, size=40, overlap=0)
        vectors = embedder.embed([c.text for c in chunks])
        count = store.replace_chunks(source.id, NewChunks(chunks, vectors, embedder.name, [{"k": key}] * len(chunks)))
        assert count == len(chunks)
        ids[key] = source.id
    # replacing does not duplicate
    chunks = make_chunks(texts["a"], size=40, overlap=0)
    store.replace_chunks(ids["a"], NewChunks(chunks, embedder.embed([c.text for c in chunks]), embedder.name))
    assert store.get_source(ids["a"]).chunk_count == len(chunks)  # type: ignore[union-attr]

    query = embedder.embed(["how fast do tectonic plates move"])[0]
    results = store.search("ns", query, 2, embedder.name)
    assert results[0]["source_id"] == ids["b"] and results[0]["k"] == "b"
    assert results[0]["score"] >= results[1]["score"]
    assert store.search("other", query, 2, embedder.name) == []
    with pytest.raises(ModelMismatchError):
        store.search("ns", query, 2, "some-other-model")

    # appends with a checkpoint, in one transaction
    page = make_chunks("Lighthouses once burned whale oil.", first_index=10)
    store.append_chunks(ids["b"], NewChunks(page, embedder.embed([page[0].text]), embedder.name), {"pages": 1})
    assert store.load_checkpoint(ids["b"]) == {"pages": 1}
    hit = store.search("ns", embedder.embed(["whale oil lighthouses"])[0], 1, embedder.name)[0]
    assert hit["chunk_index"] == 10 and hit["source_id"] == ids["b"]

    with pytest.raises(SourceNotFoundError):
        store.append_chunks("missing", NewChunks(page, embedder.embed([page[0].text]), embedder.name))
    with pytest.raises(ModelMismatchError):
        store.replace_chunks(ids["a"], NewChunks(page, np.ones((1, 3), dtype=np.float32), "tiny"))

    assert store.delete_source(ids["b"])
    assert not store.delete_source(ids["b"])
    assert store.load_checkpoint(ids["b"]) is None
    assert {r["source_id"] for r in store.search("ns", query, 10, embedder.name)} == {ids["a"]}
    assert [s.id for s in store.list_sources("ns")] == [ids["a"]]


def test_sqlite_store(tmp_path: object) -> None:
    store = SQLiteStore(f"{tmp_path}/store.db")
    try:
        exercise(store)
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_store_exact_numpy_search(raw_pg_url: str) -> None:
    store = PostgresStore(raw_pg_url, use_pgvector=False)
    try:
        assert not store.pgvector
        exercise(store)
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_store_pgvector_when_available(raw_pg_url: str) -> None:
    store = PostgresStore(raw_pg_url)
    try:
        if not store.pgvector:
            pytest.skip("this PostgreSQL server has no pgvector extension")
        exercise(store)
    finally:
        store.close()


def _cache_follows_writes(writer: VectorStore, reader: VectorStore) -> None:
    """A reader's cached matrix picks up appends (incrementally) and deletions (by reloading) of another writer."""
    embedder = HashingEmbedder()

    def add(source_id: str, text: str, replace: bool = False) -> None:
        chunks = make_chunks(text)
        new = NewChunks(chunks, embedder.embed([c.text for c in chunks]), embedder.name)
        if replace:
            writer.replace_chunks(source_id, new)
        else:
            writer.append_chunks(source_id, new)

    def top(query: str) -> str:
        return str(reader.search("ns", embedder.embed([query])[0], 1, embedder.name)[0]["text"])

    writer.insert_source("s1", "ns", "one", "website")
    add("s1", "Badgers dig setts in the woodland.")
    assert top("badgers dig setts") == "Badgers dig setts in the woodland."
    add("s1", "Herons stand still in shallow water.")  # an append: the reader reads only the new row
    assert top("herons stand still") == "Herons stand still in shallow water."
    add("s1", "Foxes hunt at dusk.", replace=True)  # a deletion: the reader reloads
    assert top("badgers dig setts") == "Foxes hunt at dusk."
    assert len(reader.search("ns", embedder.embed(["x"])[0], 10, embedder.name)) == 1


def test_sqlite_cache_follows_writes_of_another_connection(tmp_path: object) -> None:
    writer, reader = SQLiteStore(f"{tmp_path}/s.db"), SQLiteStore(f"{tmp_path}/s.db")
    try:
        _cache_follows_writes(writer, reader)
    finally:
        writer.close()
        reader.close()


@pytest.mark.postgres
def test_postgres_cache_follows_writes_of_another_connection(raw_pg_url: str) -> None:
    writer, reader = PostgresStore(raw_pg_url, use_pgvector=False), PostgresStore(raw_pg_url, use_pgvector=False)
    try:
        _cache_follows_writes(writer, reader)
    finally:
        writer.close()
        reader.close()
