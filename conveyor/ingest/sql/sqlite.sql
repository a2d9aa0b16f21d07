-- name: insert_source
INSERT INTO ingest_sources (id, namespace, name, kind, status, chunk_count, error, location, options, job_id,
                            created_at, updated_at)
VALUES (:id, :namespace, :name, :kind, :status, 0, NULL, :location, :options, :job_id, :now, :now);

-- name: get_source
SELECT * FROM ingest_sources WHERE id = :id;

-- name: list_sources
SELECT * FROM ingest_sources
WHERE (:namespace IS NULL OR namespace = :namespace)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: set_status
UPDATE ingest_sources SET status = :status, error = :error, updated_at = :now WHERE id = :id;

-- name: set_job
UPDATE ingest_sources SET job_id = :job_id, updated_at = :now WHERE id = :id;

-- name: refresh_chunk_count
UPDATE ingest_sources
SET chunk_count = (SELECT count(*) FROM ingest_chunks WHERE source_id = :id), updated_at = :now
WHERE id = :id;

-- name: lock_source
SELECT namespace FROM ingest_sources WHERE id = :id;

-- name: get_namespace
SELECT model, dimensions, version, deletions FROM ingest_namespaces WHERE namespace = :namespace;

-- name: insert_namespace
INSERT INTO ingest_namespaces (namespace, model, dimensions, version) VALUES (:namespace, :model, :dimensions, 1)
ON CONFLICT (namespace) DO NOTHING;

-- name: lock_namespace
SELECT model, dimensions, version FROM ingest_namespaces WHERE namespace = :namespace;

-- name: bump_namespace
UPDATE ingest_namespaces SET version = version + 1 WHERE namespace = :namespace;

-- name: bump_deletions
UPDATE ingest_namespaces SET deletions = deletions + 1 WHERE namespace = :namespace;

-- name: namespace_vectors_after
SELECT id, embedding FROM ingest_chunks WHERE namespace = :namespace AND id > :after ORDER BY id;

-- name: delete_chunks_of_source
DELETE FROM ingest_chunks WHERE source_id = :id;

-- name: insert_chunk
INSERT INTO ingest_chunks (source_id, namespace, chunk_index, text, char_count, word_count, metadata, embedding,
                           created_at)
VALUES (:source_id, :namespace, :chunk_index, :text, :char_count, :word_count, :metadata, :embedding, :now);

-- name: has_chunk
SELECT EXISTS (SELECT 1 FROM ingest_chunks WHERE source_id = :id AND chunk_index = :chunk_index) AS stored;

-- name: get_crawl_state
SELECT state FROM ingest_crawl_state WHERE source_id = :id;

-- name: save_crawl_state
INSERT INTO ingest_crawl_state (source_id, state, updated_at) VALUES (:id, :state, :now)
ON CONFLICT (source_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at;

-- name: delete_crawl_state
DELETE FROM ingest_crawl_state WHERE source_id = :id;

-- name: delete_source
DELETE FROM ingest_sources WHERE id = :id;

-- name: namespace_has_chunks
SELECT EXISTS (SELECT 1 FROM ingest_chunks WHERE namespace = :namespace);

-- name: delete_namespace
DELETE FROM ingest_namespaces WHERE namespace = :namespace;

-- name: namespace_vectors
SELECT id, embedding FROM ingest_chunks WHERE namespace = :namespace ORDER BY id;

-- name: chunks_by_ids
SELECT c.id, c.source_id, c.namespace, c.chunk_index, c.text, c.char_count, c.word_count, c.metadata, c.created_at,
       s.name AS source_name, s.kind AS source_kind
FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id
WHERE c.id IN (SELECT value FROM json_each(:ids));

-- name: source_chunks
SELECT id, chunk_index, text, char_count, word_count, metadata FROM ingest_chunks WHERE source_id = :id
ORDER BY chunk_index;

-- name: init_schema_version
INSERT INTO ingest_schema (id, version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING;

-- name: schema_version
SELECT version FROM ingest_schema WHERE id = 1;

-- name: set_schema_version
UPDATE ingest_schema SET version = :version WHERE id = 1;

-- name: filtered_chunk_ids
-- The chunks of a namespace that pass a search's filters (each filter a JSON value, or NULL: not filtered).
SELECT c.id FROM ingest_chunks c JOIN ingest_sources s ON s.id = c.source_id
WHERE c.namespace = :namespace
  AND (:source_ids IS NULL OR c.source_id IN (SELECT value FROM json_each(:source_ids)))
  AND (:kinds IS NULL OR s.kind IN (SELECT value FROM json_each(:kinds)))
  AND (:metadata IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:metadata) f
        WHERE NOT EXISTS (SELECT 1 FROM json_each(c.metadata) m
                          WHERE m.key = f.key AND m.type = f.type AND m.atom IS f.atom)));

-- name: keyword_search
-- BM25 (FTS5's bm25() is lower for better matches: negated, higher is better), with the same filters.
SELECT c.id, -bm25(ingest_chunks_fts) AS score
FROM ingest_chunks_fts JOIN ingest_chunks c ON c.id = ingest_chunks_fts.rowid
JOIN ingest_sources s ON s.id = c.source_id
WHERE ingest_chunks_fts MATCH :match AND c.namespace = :namespace
  AND (:source_ids IS NULL OR c.source_id IN (SELECT value FROM json_each(:source_ids)))
  AND (:kinds IS NULL OR s.kind IN (SELECT value FROM json_each(:kinds)))
  AND (:metadata IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:metadata) f
        WHERE NOT EXISTS (SELECT 1 FROM json_each(c.metadata) m
                          WHERE m.key = f.key AND m.type = f.type AND m.atom IS f.atom)))
ORDER BY bm25(ingest_chunks_fts), c.id
LIMIT :limit;

-- name: find_source
-- The newest source of that name and kind in the namespace: adding the same file again replaces it.
SELECT * FROM ingest_sources WHERE namespace = :namespace AND kind = :kind AND name = :name
ORDER BY created_at DESC, id DESC LIMIT 1;

-- name: reset_source
UPDATE ingest_sources SET location = :location, options = :options, status = :status, error = :error,
                          job_id = :job_id, updated_at = :now
WHERE id = :id;

-- name: fts_total
SELECT chunks FROM ingest_fts_stats WHERE id = 1;

-- name: term_frequency
-- In how many chunks a word is, counted up to a cap (cheap: no ranking, the index's postings only).
SELECT count(*) AS chunks FROM (SELECT 1 FROM ingest_chunks_fts WHERE ingest_chunks_fts MATCH :term LIMIT :cap);
