-- Version 2: a full-text index of the chunks' text (FTS5, BM25), kept in step with ingest_chunks by triggers, so a
-- chunk replaced or deleted leaves the index with it; filled from the chunks an older store already has.
CREATE VIRTUAL TABLE IF NOT EXISTS ingest_chunks_fts USING fts5(
    text, content='ingest_chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS ingest_chunks_fts_insert AFTER INSERT ON ingest_chunks BEGIN
    INSERT INTO ingest_chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS ingest_chunks_fts_delete AFTER DELETE ON ingest_chunks BEGIN
    INSERT INTO ingest_chunks_fts (ingest_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS ingest_chunks_fts_update AFTER UPDATE OF text ON ingest_chunks BEGIN
    INSERT INTO ingest_chunks_fts (ingest_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO ingest_chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
INSERT INTO ingest_chunks_fts (ingest_chunks_fts) VALUES ('rebuild');
