"""The vector store on a real PostgreSQL database, with and without pgvector (whichever the server has)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from conveyor.ingest.chunk import Chunk, make_chunks
from conveyor.ingest.embed import HashingEmbedder
from conveyor.ingest.errors import ModelMismatchError, SourceNotFoundError
from conveyor.ingest.store import NewChunks, PostgresStore, SearchFilter, SQLiteStore, VectorStore, queries


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
    # PostgreSQL ranks the chunks a narrower query selected by the query of all the words (`rank`): FTS5's bm25 needs
    # only the one
    own = {"keyword_search": {"rank"}}
    for name, sql in sqlite.items():  # else the same parameters in both dialects
        expected = set(re.findall(r":(\w+)", sql)) | own.get(name, set())
        assert sorted(expected) == sorted(set(re.findall(r"%\((\w+)\)s", postgres[name])))


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


@pytest.mark.postgres
def test_postgres_keyword_search_ranks_pairs_first_without_changing_the_results(raw_pg_url: str) -> None:
    """A query of several words first ranks only the chunks holding two of them (few, where one word selects many):
    `ts_rank` gives a chunk 0.061 to 0.1 per word it holds, so one holding two outranks every chunk holding one, and
    the narrowed answer is the full ranking's whenever it has as many chunks as asked for; else the full ranking."""
    import conveyor.ingest.store._postgres as pg

    rng = np.random.default_rng(5)
    vocabulary = ["heron", "otter", "badger", "puffin", "kestrel", "newt", "stoat", "vole"]
    store = PostgresStore(raw_pg_url, use_pgvector=False)
    try:
        store.insert_source("s", "ns", "s", "text")
        texts = [" ".join(rng.choice(vocabulary, size=int(rng.integers(1, 6)))) + "." for _ in range(300)]
        texts += ["heron " * 12 + "."] * 5  # one word many times: still below any chunk holding two words
        chunks = [Chunk(i, t, len(t), len(t.split())) for i, t in enumerate(texts)]
        store.replace_chunks("s", NewChunks(chunks, HashingEmbedder().embed(texts), HashingEmbedder().name))
        queries = [["heron", "otter"], ["heron", "puffin", "vole"], ["badger", "kestrel", "newt", "stoat"]]
        for terms in queries:
            for limit in (1, 5, 40, 400):
                params = {"namespace": "ns", "limit": limit, **SearchFilter().params()}
                with store._read() as ex:
                    full = store._ranked(ex, {**params, "match": " | ".join(terms), "rank": " | ".join(terms)})
                    answered = store._keyword_query(ex, terms, False, params)
                    paired = store._ranked(ex, {**params, "rank": " | ".join(terms), "match": " | ".join(
                        f"({a} & {b})" for a, b in itertools.combinations(terms, 2))})
                assert answered == full, (terms, limit)
                assert all(i not in {c for c, _ in full[:5]} for i in range(300, 305)), "one word only ranked high"
                if len(paired) >= limit:  # answered by the narrowed query alone
                    assert answered == paired, (terms, limit)
        assert pg.PAIRED_MAX_TERMS >= 4
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_store_keeps_the_words_in_the_row_and_the_vector_out_of_it(raw_pg_url: str) -> None:
    """Schema version 3: the tsvector a keyword search reads stays in the heap row (MAIN), the vector goes to TOAST."""
    store = PostgresStore(raw_pg_url, use_pgvector=False)
    try:
        with store._read() as ex:
            rows = ex.rows("SELECT attname, attstorage FROM pg_attribute WHERE attrelid = 'ingest_chunks'::regclass"
                           " AND attname IN ('text_tsv', 'embedding')", {})
        assert {r["attname"]: r["attstorage"] for r in rows} == {"text_tsv": "m", "embedding": "e"}
    finally:
        store.close()
