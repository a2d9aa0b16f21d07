-- Version 2: a full-text index of the chunks' text (FTS5, BM25), kept in step with ingest_chunks by triggers, so a
-- chunk replaced or deleted leaves the index with it; filled from the chunks an older store already has. The
-- triggers also keep the number of chunks indexed, which tells a query's common words from its rare ones.
CREATE TABLE IF NOT EXISTS ingest_fts_stats (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    chunks INTEGER NOT NULL
);
INSERT INTO ingest_fts_stats (id, chunks) SELECT 1, count(*) FROM ingest_chunks WHERE true
ON CONFLICT (id) DO UPDATE SET chunks = excluded.chunks;
CREATE VIRTUAL TABLE IF NOT EXISTS ingest_chunks_fts USING fts5(
    text, content='ingest_chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS ingest_chunks_fts_insert AFTER INSERT ON ingest_chunks BEGIN
    INSERT INTO ingest_chunks_fts (rowid, text) VALUES (new.id, new.text);
    UPDATE ingest_fts_stats SET chunks = chunks + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS ingest_chunks_fts_delete AFTER DELETE ON ingest_chunks BEGIN
    INSERT INTO ingest_chunks_fts (ingest_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    UPDATE ingest_fts_stats SET chunks = chunks - 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS ingest_chunks_fts_update AFTER UPDATE OF text ON ingest_chunks BEGIN
    INSERT INTO ingest_chunks_fts (ingest_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO ingest_chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
INSERT INTO ingest_chunks_fts (ingest_chunks_fts) VALUES ('rebuild');
