-- The ingestion tables, beside the jobs in the same PostgreSQL database. Vectors are float32 bytea; with pgvector
-- an `embedding_pgv vector` column is added by the store and searched instead.
CREATE TABLE IF NOT EXISTS ingest_sources (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    location TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    job_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_sources_by_namespace ON ingest_sources (namespace, created_at);
CREATE TABLE IF NOT EXISTS ingest_namespaces (
    namespace TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    deletions BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ingest_chunks (
    id BIGSERIAL PRIMARY KEY,
    source_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    char_count INTEGER NOT NULL,
    word_count INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    embedding BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_chunks_by_source ON ingest_chunks (source_id);
CREATE INDEX IF NOT EXISTS ingest_chunks_by_namespace ON ingest_chunks (namespace, id);
CREATE TABLE IF NOT EXISTS ingest_crawl_state (
    source_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
-- Which of the store's schema versions this database has (see VectorStore.migrate); one without the table is at 1.
CREATE TABLE IF NOT EXISTS ingest_schema (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
