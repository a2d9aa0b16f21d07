-- Version 2: a full-text index of the chunks' text (an English tsvector, generated, so it follows every insert and
-- delete; a GIN index), filled for the chunks an older store already has by the column's generation.
ALTER TABLE ingest_chunks ADD COLUMN IF NOT EXISTS text_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX IF NOT EXISTS ingest_chunks_text_tsv ON ingest_chunks USING gin (text_tsv);
