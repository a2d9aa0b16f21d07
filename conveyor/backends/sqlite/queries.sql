-- Conveyor queries for SQLite. Each query stands under a `-- name:` header and is loaded once.
-- Every move out of 'processing' is guarded by the lease: id, status, worker and attempt must all still match.

-- name: migration_lock
-- Migrations run in a write transaction (BEGIN IMMEDIATE): the file's write lock already serialises them.
SELECT 1;

-- name: create_schema_table
CREATE TABLE IF NOT EXISTS conveyor_schema (version INTEGER NOT NULL);

-- name: schema_version
SELECT max(version) FROM conveyor_schema;

-- name: set_schema_version
INSERT INTO conveyor_schema (version) VALUES (:version);

-- name: insert_job
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           unique_key, group_key, webhook_url, created_at, updated_at)
VALUES (:id, :type, :queue, :status, :priority, :args, :max_retries, :timeout, :run_at, :tags, :metadata,
        :unique_key, :group_key, :webhook_url, :now, :now)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing')
DO NOTHING;

-- name: insert_batch
-- A batch of one task with the same options (enqueue_many): the options once, `:batch` a JSON array of [id, args],
-- one statement for the whole batch (C-speed encode and parse instead of a statement per row).
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           group_key, created_at, updated_at)
SELECT value ->> 0, :type, :queue, :status, :priority, value -> 1, :max_retries, :timeout, :run_at, :tags, :metadata,
       :group_key, :now, :now
FROM json_each(:batch);

-- name: insert_jobs_batch
-- Jobs of any options without unique keys (enqueue_batch): `:batch` a JSON array of
-- [id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata, group_key].
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           group_key, created_at, updated_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value -> 5, value ->> 6, value ->> 7,
       value ->> 8, value -> 9, value -> 10, value ->> 11, :now, :now
FROM json_each(:batch);

-- name: get_open_by_unique_key
SELECT * FROM conveyor_jobs
WHERE unique_key = :unique_key AND status IN ('scheduled', 'pending', 'processing');

-- name: get_job
SELECT j.*, (SELECT json_group_array(d.parent_id) FROM conveyor_job_deps d WHERE d.child_id = j.id) AS depends_on
FROM conveyor_jobs j WHERE j.id = :id;

-- name: job_status
SELECT status FROM conveyor_jobs WHERE id = :id;

-- name: list_jobs
SELECT *, (SELECT json_group_array(d.parent_id) FROM conveyor_job_deps d WHERE d.child_id = conveyor_jobs.id)
       AS depends_on
FROM conveyor_jobs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(conveyor_jobs.tags) WHERE value = :tag))
  AND (:older_than IS NULL OR coalesce(completed_at, created_at) < :older_than)
  AND (:cursor IS NULL OR id < :cursor)
ORDER BY id DESC
LIMIT :limit;

-- name: select_ids
SELECT id FROM conveyor_jobs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(conveyor_jobs.tags) WHERE value = :tag))
  AND (:older_than IS NULL OR coalesce(completed_at, created_at) < :older_than)
ORDER BY id DESC;

-- name: job_events
SELECT * FROM conveyor_job_events WHERE job_id = :id AND to_status IS NOT NULL ORDER BY id;

-- name: promote_due
UPDATE conveyor_jobs
SET status = 'pending', updated_at = :now, status_message = 'due'
WHERE status = 'scheduled' AND run_at <= :now;

-- name: limited_queues
SELECT name FROM conveyor_queues WHERE NOT paused AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL OR grouped)
ORDER BY name;

-- name: lock_queue
-- The claim's transaction holds the file's write lock: reading the row is enough.
SELECT paused, concurrency, rate_limit, window_start, window_count, grouped, group_concurrency, group_rate_limit
FROM conveyor_queues WHERE name = :queue;

-- name: claim_jobs
UPDATE conveyor_jobs
SET status = 'processing', attempts = attempts + 1, worker_id = :worker_id, started_at = max(:now, run_at),
    updated_at = :now, lease_expires_at = :lease_until, status_message = NULL
WHERE seq IN (
    SELECT seq FROM conveyor_jobs
    WHERE status = 'pending' AND group_key IS NULL
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
      AND queue NOT IN (SELECT name FROM conveyor_queues
                        WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
    ORDER BY priority DESC, run_at, seq
    LIMIT :limit)
RETURNING id, type, queue, priority, run_at, args, attempts, attempts_base, max_retries, timeout;

-- name: ready_jobs
-- With limited queues about, the claim first reads candidates (these, plus ready_jobs_in_queue of each limited queue
-- up to its allowance), picks the best across all of them (limits.py), then claims those with claim_chosen. The first
-- column is the candidate's ref: it orders jobs of equal priority and run_at, and claim_chosen takes it.
SELECT seq, queue, priority, run_at FROM conveyor_jobs
WHERE status = 'pending' AND group_key IS NULL
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
  AND queue NOT IN (SELECT name FROM conveyor_queues
                    WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
ORDER BY priority DESC, run_at, seq
LIMIT :limit;

-- name: ready_jobs_in_queue
SELECT seq, queue, priority, run_at FROM conveyor_jobs
WHERE status = 'pending' AND group_key IS NULL AND queue = :queue
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
ORDER BY priority DESC, run_at, seq
LIMIT :limit;

-- name: claim_chosen
UPDATE conveyor_jobs
SET status = 'processing', attempts = attempts + 1, worker_id = :worker_id, started_at = max(:now, run_at),
    updated_at = :now, lease_expires_at = :lease_until, status_message = NULL
WHERE seq IN (SELECT value FROM json_each(:refs)) AND status = 'pending'
RETURNING id, type, queue, priority, run_at, args, attempts, attempts_base, max_retries, timeout, group_key;

-- name: count_processing_in_queue
SELECT count(*) FROM conveyor_jobs WHERE status = 'processing' AND queue = :queue;

-- name: record_queue_starts
UPDATE conveyor_queues SET window_start = :window_start, window_count = :window_count WHERE name = :queue;

-- name: next_run_at
SELECT min(run_at) FROM conveyor_jobs
WHERE status = 'scheduled' AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)));

-- name: has_ready_jobs
SELECT EXISTS (
    SELECT 1 FROM conveyor_jobs
    WHERE (status = 'pending' OR (status = 'scheduled' AND run_at <= :now))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND queue NOT IN (SELECT name FROM conveyor_queues WHERE paused));

-- A worker cycle's outcomes, one statement per kind for the whole batch: `:batch` is a JSON array of rows
-- (`[id, worker_id, attempt, ...]`), read with json_each; each job is found by id and guarded by its lease. RETURNING
-- names the jobs written: the others' lease was lost.

-- name: complete_jobs
UPDATE conveyor_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'completed' END,
    result = CASE WHEN cancel_requested THEN NULL ELSE o.result END,
    progress = CASE WHEN cancel_requested THEN progress ELSE 100 END,
    error = CASE WHEN cancel_requested THEN error END,  -- a completed job keeps no error of an earlier attempt
    error_detail = CASE WHEN cancel_requested THEN error_detail END,
    completed_at = :now, updated_at = :now, lease_expires_at = NULL,
    status_message = CASE WHEN cancel_requested THEN 'cancelled while running' ELSE NULL END
FROM (SELECT value ->> 0 AS id, value ->> 1 AS worker_id, value ->> 2 AS attempt, value -> 3 AS result
      FROM json_each(:batch)) AS o
WHERE conveyor_jobs.id = o.id AND conveyor_jobs.status = 'processing' AND conveyor_jobs.worker_id = o.worker_id
  AND conveyor_jobs.attempts = o.attempt
RETURNING conveyor_jobs.id;

-- name: fail_jobs
UPDATE conveyor_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN o.retry_at IS NOT NULL AND attempts - attempts_base <= max_retries THEN 'scheduled'
                  ELSE 'failed' END,
    run_at = CASE WHEN NOT cancel_requested AND o.retry_at IS NOT NULL AND attempts - attempts_base <= max_retries
                  THEN o.retry_at ELSE run_at END,
    completed_at = CASE WHEN NOT cancel_requested AND o.retry_at IS NOT NULL
                             AND attempts - attempts_base <= max_retries
                        THEN NULL ELSE :now END,
    error = o.error, error_detail = o.detail, updated_at = :now, lease_expires_at = NULL,
    status_message = o.error
FROM (SELECT value ->> 0 AS id, value ->> 1 AS worker_id, value ->> 2 AS attempt, value ->> 3 AS error,
             value ->> 4 AS detail, value ->> 5 AS retry_at
      FROM json_each(:batch)) AS o
WHERE conveyor_jobs.id = o.id AND conveyor_jobs.status = 'processing' AND conveyor_jobs.worker_id = o.worker_id
  AND conveyor_jobs.attempts = o.attempt
RETURNING conveyor_jobs.id;

-- name: cancel_running_jobs
UPDATE conveyor_jobs
SET status = 'cancelled', completed_at = :now, updated_at = :now, lease_expires_at = NULL,
    status_message = o.reason
FROM (SELECT value ->> 0 AS id, value ->> 1 AS worker_id, value ->> 2 AS attempt, value ->> 3 AS reason
      FROM json_each(:batch)) AS o
WHERE conveyor_jobs.id = o.id AND conveyor_jobs.status = 'processing' AND conveyor_jobs.worker_id = o.worker_id
  AND conveyor_jobs.attempts = o.attempt
RETURNING conveyor_jobs.id;

-- name: release_jobs
UPDATE conveyor_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    completed_at = CASE WHEN cancel_requested THEN :now ELSE NULL END,
    attempts_base = attempts_base + 1, updated_at = :now, lease_expires_at = NULL, status_message = o.reason
FROM (SELECT value ->> 0 AS id, value ->> 1 AS worker_id, value ->> 2 AS attempt, value ->> 3 AS reason
      FROM json_each(:batch)) AS o
WHERE conveyor_jobs.id = o.id AND conveyor_jobs.status = 'processing' AND conveyor_jobs.worker_id = o.worker_id
  AND conveyor_jobs.attempts = o.attempt
RETURNING conveyor_jobs.id;

-- name: write_progress
UPDATE conveyor_jobs
SET progress = o.progress, progress_info = o.info, updated_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS worker_id, value ->> 2 AS attempt, value ->> 3 AS progress,
             value -> 4 AS info
      FROM json_each(:batch)) AS o
WHERE conveyor_jobs.id = o.id AND conveyor_jobs.status = 'processing' AND conveyor_jobs.worker_id = o.worker_id
  AND conveyor_jobs.attempts = o.attempt;

-- name: upsert_worker
INSERT INTO conveyor_workers (id, host, pid, queues, slots, started_at, heartbeat_at, expires_at, types)
VALUES (:id, :host, :pid, :queues, :slots, :started_at, :now, :lease_until, :types)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at,
                               types = excluded.types;

-- name: register_task
INSERT INTO conveyor_tasks (name, queue, priority, max_retries, timeout, updated_at)
VALUES (:name, :queue, :priority, :max_retries, :timeout, :now)
ON CONFLICT (name) DO UPDATE SET queue = excluded.queue, priority = excluded.priority,
                                 max_retries = excluded.max_retries, timeout = excluded.timeout,
                                 updated_at = excluded.updated_at;

-- name: renew_leases
UPDATE conveyor_jobs SET lease_expires_at = :lease_until
WHERE status = 'processing' AND worker_id = :worker_id
  AND (:holding IS NULL OR id IN (SELECT value FROM json_each(:holding)));

-- name: cancel_requests
SELECT id FROM conveyor_jobs WHERE status = 'processing' AND worker_id = :worker_id AND cancel_requested;

-- name: remove_worker
DELETE FROM conveyor_workers WHERE id = :id;

-- name: rescue_expired
UPDATE conveyor_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts - attempts_base <= max_retries THEN 'pending'
                  ELSE 'failed' END,
    completed_at = CASE WHEN NOT cancel_requested AND attempts - attempts_base <= max_retries
                        THEN NULL ELSE :now END,
    error = CASE WHEN cancel_requested THEN error
                 ELSE 'worker lost: its lease expired during attempt ' || attempts END,
    error_detail = CASE WHEN cancel_requested THEN error_detail ELSE NULL END,
    updated_at = :now, lease_expires_at = NULL,
    status_message = 'lease expired (worker lost)'
WHERE status = 'processing' AND lease_expires_at < :now;

-- name: prune_finished
DELETE FROM conveyor_jobs WHERE seq IN (
    SELECT seq FROM conveyor_jobs
    WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < :before
      AND NOT (has_dependents AND EXISTS (  -- a parent whose children have not all ended: they need it
          SELECT 1 FROM conveyor_job_deps d JOIN conveyor_jobs c ON c.id = d.child_id
          WHERE d.parent_id = conveyor_jobs.id AND c.status NOT IN ('completed', 'failed', 'cancelled')))
    LIMIT :batch);

-- name: purge_jobs
DELETE FROM conveyor_jobs WHERE seq IN (
    SELECT seq FROM conveyor_jobs
    WHERE status IN (SELECT value FROM json_each(:statuses)) AND completed_at < :before
      AND NOT (has_dependents AND EXISTS (  -- a parent whose children have not all ended: they need it
          SELECT 1 FROM conveyor_job_deps d JOIN conveyor_jobs c ON c.id = d.child_id
          WHERE d.parent_id = conveyor_jobs.id AND c.status NOT IN ('completed', 'failed', 'cancelled')))
    LIMIT :batch);

-- name: prune_workers
DELETE FROM conveyor_workers WHERE expires_at < :before;

-- name: cancel_waiting_job
UPDATE conveyor_jobs
SET status = 'cancelled', completed_at = :now, updated_at = :now, status_message = :message
WHERE id = :id AND status IN ('waiting', 'scheduled', 'pending');

-- name: request_cancel
UPDATE conveyor_jobs SET cancel_requested = 1, updated_at = :now
WHERE id = :id AND status = 'processing';

-- name: retry_job
UPDATE conveyor_jobs
SET status = CASE WHEN deps_remaining > 0 THEN 'waiting' ELSE 'pending' END, attempts_base = attempts,
    run_at = :now, result = NULL, completed_at = NULL, cancel_requested = 0, progress = 0, progress_info = NULL,
    blocked_by = NULL, updated_at = :now, status_message = 'retried'
WHERE id = :id AND status IN ('failed', 'cancelled');

-- name: delete_job
-- A job that others wait for is deleted only once it ended (its waiting children would wait forever).
DELETE FROM conveyor_jobs WHERE id = :id AND status <> 'processing'
  AND NOT (has_dependents AND status NOT IN ('completed', 'failed', 'cancelled')
           AND EXISTS (SELECT 1 FROM conveyor_job_deps d JOIN conveyor_jobs c ON c.id = d.child_id
                       WHERE d.parent_id = conveyor_jobs.id AND c.status = 'waiting'));

-- name: queue_settings
SELECT name, paused, concurrency, rate_limit, group_concurrency, group_rate_limit, grouped FROM conveyor_queues;

-- name: queue_counts
SELECT queue, status, count(*) AS n FROM conveyor_jobs GROUP BY queue, status;

-- name: ensure_queue
INSERT INTO conveyor_queues (name, updated_at) VALUES (:name, :now) ON CONFLICT (name) DO NOTHING;

-- name: update_queue
UPDATE conveyor_queues
SET paused = coalesce(:paused, paused),
    concurrency = CASE WHEN :clear_concurrency THEN NULL ELSE coalesce(:concurrency, concurrency) END,
    rate_limit = CASE WHEN :clear_rate_limit THEN NULL ELSE coalesce(:rate_limit, rate_limit) END,
    group_concurrency = CASE WHEN :clear_group_concurrency THEN NULL
                             ELSE coalesce(:group_concurrency, group_concurrency) END,
    group_rate_limit = CASE WHEN :clear_group_rate_limit THEN NULL
                            ELSE coalesce(:group_rate_limit, group_rate_limit) END,
    grouped = CASE WHEN :group_concurrency IS NOT NULL OR :group_rate_limit IS NOT NULL
                   THEN 1 ELSE grouped END,
    updated_at = :now
WHERE name = :name;

-- name: live_workers
SELECT w.*, (SELECT json_group_array(j.id) FROM conveyor_jobs j
             WHERE j.status = 'processing' AND j.worker_id = w.id) AS running
FROM conveyor_workers w WHERE w.expires_at >= :now ORDER BY w.started_at;

-- name: live_worker_types
SELECT types FROM conveyor_workers WHERE expires_at >= :now;

-- name: counts_by_type
SELECT type, status, count(*) AS n FROM conveyor_jobs GROUP BY type, status;

-- name: recent_durations
SELECT type, completed_at - started_at AS duration, CAST((completed_at - :since) / 60 AS INTEGER) AS minute
FROM conveyor_jobs
WHERE status = 'completed' AND completed_at >= :since AND started_at IS NOT NULL;

-- name: throughput
SELECT CAST((completed_at - :since) / 60 AS INTEGER) AS minute, status, count(*) AS n FROM conveyor_jobs
WHERE status IN ('completed', 'failed') AND completed_at >= :since
GROUP BY minute, status;

-- name: changes_since
SELECT id, job_id, at FROM conveyor_job_events WHERE id > :after_id ORDER BY id LIMIT :limit;

-- name: last_change_id
SELECT coalesce(max(id), 0) FROM conveyor_job_events;

-- name: prune_changes
DELETE FROM conveyor_job_events
WHERE to_status IS NULL AND at < :before AND id < (SELECT max(id) FROM conveyor_job_events);
