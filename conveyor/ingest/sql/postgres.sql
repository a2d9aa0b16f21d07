-- name: insert_source
INSERT INTO ingest_sources (id, namespace, name, kind, status, chunk_count, error, location, options, job_id,
                            created_at, updated_at)
VALUES (%(id)s, %(namespace)s, %(name)s, %(kind)s, %(status)s, 0, NULL, %(location)s, %(options)s, %(job_id)s, %(now)s, %(now)s);

-- name: get_source
SELECT * FROM ingest_sources WHERE id = %(id)s;

-- name: list_sources
SELECT * FROM ingest_sources
WHERE (%(namespace)s::text IS NULL OR namespace = %(namespace)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: set_status
UPDATE ingest_sources SET status = %(status)s, error = %(error)s, updated_at = %(now)s WHERE id = %(id)s;

-- name: set_job
UPDATE ingest_sources SET job_id = %(job_id)s, updated_at = %(now)s WHERE id = %(id)s;

-- name: refresh_chunk_count
UPDATE ingest_sources
SET chunk_count = (SELECT count(*) FROM ingest_chunks WHERE source_id = %(id)s), updated_at = %(now)s
WHERE id = %(id)s;

-- name: lock_source
SELECT namespace FROM ingest_sources WHERE id = %(id)s FOR UPDATE;

-- name: get_namespace
SELECT model, dimensions, version, deletions FROM ingest_namespaces WHERE namespace = %(namespace)s;

-- name: insert_namespace
INSERT INTO ingest_namespaces (namespace, model, dimensions, version) VALUES (%(namespace)s, %(model)s, %(dimensions)s, 1)
ON CONFLICT (namespace) DO NOTHING;

-- name: lock_namespace
SELECT model, dimensions, version FROM ingest_namespaces WHERE namespace = %(namespace)s FOR UPDATE;

-- name: bump_namespace
UPDATE ingest_namespaces SET version = version + 1 WHERE namespace = %(namespace)s;

-- name: bump_deletions
UPDATE ingest_namespaces SET deletions = deletions + 1 WHERE namespace = %(namespace)s;

-- name: namespace_vectors_after
SELECT id, embedding FROM ingest_chunks WHERE namespace = %(namespace)s AND id > %(after)s ORDER BY id;

-- name: delete_chunks_of_source
DELETE FROM ingest_chunks WHERE source_id = %(id)s;

-- name: insert_chunk
INSERT INTO ingest_chunks (source_id, namespace, chunk_index, text, char_count, word_count, metadata, embedding,
                           created_at)
VALUES (%(source_id)s, %(namespace)s, %(chunk_index)s, %(text)s, %(char_count)s, %(word_count)s, %(metadata)s, %(embedding)s, %(now)s);

-- name: has_chunk
SELECT EXISTS (SELECT 1 FROM ingest_chunks WHERE source_id = %(id)s AND chunk_index = %(chunk_index)s) AS stored;

-- name: get_crawl_state
SELECT state FROM ingest_crawl_state WHERE source_id = %(id)s;

-- name: save_crawl_state
INSERT INTO ingest_crawl_state (source_id, state, updated_at) VALUES (%(id)s, %(state)s, %(now)s)
ON CONFLICT (source_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at;

-- name: delete_crawl_state
DELETE FROM ingest_crawl_state WHERE source_id = %(id)s;

-- name: delete_source
DELETE FROM ingest_sources WHERE id = %(id)s;

-- name: namespace_has_chunks
SELECT EXISTS (SELECT 1 FROM ingest_chunks WHERE namespace = %(namespace)s);

-- name: delete_namespace
DELETE FROM ingest_namespaces WHERE namespace = %(namespace)s;

-- name: namespace_vectors
SELECT id, embedding FROM ingest_chunks WHERE namespace = %(namespace)s ORDER BY id;

-- name: chunks_by_ids
SELECT c.id, c.source_id, c.namespace, c.chunk_index, c.text, c.char_count, c.word_count, c.metadata, c.created_at,
       s.name AS source_name, s.kind AS source_kind
FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id
WHERE c.id = ANY(%(ids)s);

-- name: source_chunks
SELECT id, chunk_index, text, char_count, word_count, metadata FROM ingest_chunks WHERE source_id = %(id)s
ORDER BY chunk_index;

-- name: pgvector_search
SELECT c.id, 1 - (c.embedding_pgv <=> %(query)s::vector) AS score
FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id
WHERE c.namespace = %(namespace)s AND c.embedding_pgv IS NOT NULL
  AND (%(source_ids)s::jsonb IS NULL OR %(source_ids)s::jsonb ? c.source_id)
  AND (%(kinds)s::jsonb IS NULL OR %(kinds)s::jsonb ? s.kind)
  AND (%(metadata)s::jsonb IS NULL OR c.metadata::jsonb @> %(metadata)s::jsonb)
ORDER BY c.embedding_pgv <=> %(query)s::vector
LIMIT %(top_k)s;

-- name: pgvector_set
UPDATE ingest_chunks SET embedding_pgv = %(vector)s::vector WHERE id = %(id)s;

-- name: pgvector_pending
SELECT id, embedding FROM ingest_chunks WHERE namespace = %(namespace)s AND embedding_pgv IS NULL;

-- name: migrate_lock
-- Two processes starting at once must not race the schema.
SELECT pg_advisory_xact_lock(hashtext('conveyor.ingest.migrate'));

-- name: enable_pgvector
CREATE EXTENSION IF NOT EXISTS vector;

-- name: add_pgvector_column
ALTER TABLE ingest_chunks ADD COLUMN IF NOT EXISTS embedding_pgv vector;

-- name: init_schema_version
INSERT INTO ingest_schema (id, version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING;

-- name: schema_version
SELECT version FROM ingest_schema WHERE id = 1;

-- name: set_schema_version
UPDATE ingest_schema SET version = %(version)s WHERE id = 1;

-- name: filtered_chunk_ids
-- The chunks of a namespace that pass a search's filters (each filter a JSON value, or NULL: not filtered).
SELECT c.id FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id
WHERE c.namespace = %(namespace)s
  AND (%(source_ids)s::jsonb IS NULL OR %(source_ids)s::jsonb ? c.source_id)
  AND (%(kinds)s::jsonb IS NULL OR %(kinds)s::jsonb ? s.kind)
  AND (%(metadata)s::jsonb IS NULL OR c.metadata::jsonb @> %(metadata)s::jsonb);

-- name: keyword_search
-- ts_rank over the English tsvector (per word, a weight that grows with its occurrences and saturates, summed over
-- the words) of the chunks that `match` selects; `rank` is the words joined by | (or & when all are required),
-- `match` that or a narrower query of the same words (words only: no other operator).
SELECT c.id, ts_rank(c.text_tsv, q.rank) AS score
FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id,
     (SELECT to_tsquery('english', %(match)s) AS match, to_tsquery('english', %(rank)s) AS rank) q
WHERE c.namespace = %(namespace)s AND c.text_tsv @@ q.match
  AND (%(source_ids)s::jsonb IS NULL OR %(source_ids)s::jsonb ? c.source_id)
  AND (%(kinds)s::jsonb IS NULL OR %(kinds)s::jsonb ? s.kind)
  AND (%(metadata)s::jsonb IS NULL OR c.metadata::jsonb @> %(metadata)s::jsonb)
ORDER BY score DESC, c.id
LIMIT %(limit)s;

-- name: add_pgvector_index
-- HNSW (cosine) over the 384-dimension vectors (MiniLM, the hashing embedder); other sizes are scanned exactly.
CREATE INDEX IF NOT EXISTS ingest_chunks_hnsw_384 ON ingest_chunks
USING hnsw ((embedding_pgv::vector(384)) vector_cosine_ops) WHERE vector_dims(embedding_pgv) = 384;

-- name: pgvector_search_384
SELECT c.id, 1 - (c.embedding_pgv::vector(384) <=> %(query)s::vector(384)) AS score
FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id
WHERE c.namespace = %(namespace)s AND vector_dims(c.embedding_pgv) = 384
  AND (%(source_ids)s::jsonb IS NULL OR %(source_ids)s::jsonb ? c.source_id)
  AND (%(kinds)s::jsonb IS NULL OR %(kinds)s::jsonb ? s.kind)
  AND (%(metadata)s::jsonb IS NULL OR c.metadata::jsonb @> %(metadata)s::jsonb)
ORDER BY c.embedding_pgv::vector(384) <=> %(query)s::vector(384)
LIMIT %(top_k)s;

-- name: find_source
-- The newest source of that name and kind in the namespace: adding the same file again replaces it.
SELECT * FROM ingest_sources WHERE namespace = %(namespace)s AND kind = %(kind)s AND name = %(name)s
ORDER BY created_at DESC, id DESC LIMIT 1;

-- name: reset_source
UPDATE ingest_sources SET location = %(location)s, options = %(options)s, status = %(status)s, error = %(error)s,
                          job_id = %(job_id)s, updated_at = %(now)s
WHERE id = %(id)s;

-- name: fts_total
-- The planner's estimate of the number of chunks (enough to tell common words from rare ones), or a count where the
-- table has not been analysed yet.
SELECT CASE WHEN reltuples > 0 THEN reltuples::bigint ELSE (SELECT count(*) FROM ingest_chunks) END AS chunks
FROM pg_class WHERE oid = 'ingest_chunks'::regclass;

-- name: common_lexemes
-- The most common lexemes of the chunks and the fraction of chunks holding each, from the statistics ANALYZE keeps
-- of the tsvector column (about a thousand lexemes); empty before the first ANALYZE.
SELECT e.lexeme, e.freq
FROM pg_stats s, unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(lexeme, freq)
WHERE s.schemaname = current_schema() AND s.tablename = 'ingest_chunks' AND s.attname = 'text_tsv'
  AND e.lexeme IS NOT NULL;

-- name: lexemes_of
-- Each word's lexemes as the index holds them (stemmed; none for a stop word).
SELECT w.word, l.lexeme
FROM unnest(%(words)s::text[]) AS w(word)
CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', w.word))) AS l(lexeme);
