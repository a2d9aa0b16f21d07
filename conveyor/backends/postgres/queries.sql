-- Conveyor queries for PostgreSQL. Each query stands under a `-- name:` header and is loaded once.
-- Every move out of 'processing' is guarded by the lease: id, status, worker and attempt must all still match.
-- Batches travel as arrays (unnest), so one statement writes any number of jobs.

-- name: create_schema_table
CREATE TABLE IF NOT EXISTS conveyor_schema (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_lock
-- The advisory lock that serialises concurrent migrations (0x636F6E76: "conv").
SELECT pg_advisory_xact_lock(1668247158);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM conveyor_schema;

-- name: set_schema_version
INSERT INTO conveyor_schema (version) VALUES (%(version)s);

-- name: relaxed_commit
-- This transaction's commit need not wait for the WAL flush (see finish_and_claim); it stays atomic and ordered.
SET LOCAL synchronous_commit = off;

-- name: claim_plan
-- Claims must walk the ready index in its order and stop after `limit` rows. A queue table's statistics are stale
-- most of the time (a burst of enqueues is minutes ahead of autovacuum's ANALYZE), and with too low a row estimate the
-- planner would rather sort every ready job; no statement of a claim transaction needs a sort, so rule sorts out. A
-- small sort that remains (the fair claim's keys) then costs the planner's "disabled" penalty, which would make it
-- compile the statement with JIT (a hundred milliseconds): JIT is off for the claim too.
SET LOCAL enable_sort = off;
SET LOCAL jit = off;

-- name: insert_jobs
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           unique_key, group_key, webhook_url, created_at, updated_at)
SELECT id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata, unique_key, group_key,
       webhook_url, %(now)s, %(now)s
FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(queues)s::text[], %(statuses)s::text[], %(priorities)s::int[],
            %(args)s::jsonb[], %(max_retries)s::int[], %(timeouts)s::float8[], %(run_ats)s::float8[],
            %(tags)s::jsonb[], %(metadata)s::jsonb[], %(unique_keys)s::text[], %(group_keys)s::text[],
            %(webhook_urls)s::text[])
     AS t(id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata, unique_key,
          group_key, webhook_url)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing')
DO NOTHING
RETURNING id;

-- name: insert_job
-- One job: scalar parameters (adapting a dozen one-element arrays cost the client more than the insert itself).
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           unique_key, group_key, webhook_url, created_at, updated_at)
VALUES (%(id)s::uuid, %(type)s, %(queue)s, %(status)s, %(priority)s::int, %(args)s::jsonb, %(max_retries)s::int,
        %(timeout)s::float8, %(run_at)s::float8, %(tags)s::jsonb, %(metadata)s::jsonb, %(unique_key)s::text,
        %(group_key)s::text, %(webhook_url)s::text, %(now)s::float8, %(now)s::float8)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing')
DO NOTHING
RETURNING id;

-- name: copy_jobs
COPY conveyor_jobs (id, args, type, queue, status, priority, max_retries, timeout, run_at, tags, metadata, group_key,
                    created_at, updated_at) FROM STDIN;

-- name: get_open_by_unique_keys
SELECT * FROM conveyor_jobs
WHERE unique_key = ANY(%(unique_keys)s::text[]) AND status IN ('scheduled', 'pending', 'processing');

-- name: get_open_by_unique_key
SELECT * FROM conveyor_jobs
WHERE unique_key = %(unique_key)s AND status IN ('scheduled', 'pending', 'processing');

-- name: get_job
SELECT j.*, ARRAY(SELECT d.parent_id::text FROM conveyor_job_deps d WHERE d.child_id = j.id) AS depends_on
FROM conveyor_jobs j WHERE j.id = %(id)s::uuid;

-- name: job_status
SELECT status FROM conveyor_jobs WHERE id = %(id)s::uuid;

-- name: list_jobs
SELECT *, ARRAY(SELECT d.parent_id::text FROM conveyor_job_deps d WHERE d.child_id = conveyor_jobs.id) AS depends_on
FROM conveyor_jobs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(tag)s::text IS NULL OR tags ? %(tag)s::text)
  AND (%(older_than)s::float8 IS NULL OR coalesce(completed_at, created_at) < %(older_than)s::float8)
  AND (%(cursor)s::uuid IS NULL OR id < %(cursor)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: select_ids
SELECT id::text FROM conveyor_jobs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(tag)s::text IS NULL OR tags ? %(tag)s::text)
  AND (%(older_than)s::float8 IS NULL OR coalesce(completed_at, created_at) < %(older_than)s::float8)
ORDER BY id DESC;

-- name: job_events
SELECT id, job_id::text, at, from_status, to_status, worker_id, message FROM conveyor_job_events
WHERE job_id = %(id)s::uuid AND to_status IS NOT NULL ORDER BY id;

-- name: promote_due
UPDATE conveyor_jobs
SET status = 'pending', updated_at = %(now)s, status_message = 'due'
WHERE id IN (SELECT id FROM conveyor_jobs WHERE status = 'scheduled' AND run_at <= %(now)s
             ORDER BY run_at LIMIT 10000 FOR UPDATE SKIP LOCKED);

-- name: work
-- A worker's cycle in one call (outcomes, progress, claim): see postgres_migration_003.sql.
SELECT conveyor_work(%(now)s::float8, %(completed)s::jsonb, %(failed)s::jsonb, %(cancelled)s::jsonb,
                     %(released)s::jsonb, %(progress)s::jsonb, %(worker_id)s::text, %(limit)s::int,
                     %(lease_until)s::float8, %(queues)s::text[], %(types)s::text[]);

-- name: limited_queues
SELECT name FROM conveyor_queues WHERE NOT paused AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL OR grouped)
ORDER BY name;

-- name: lock_queue
SELECT paused, concurrency, rate_limit, window_start, window_count, grouped, group_concurrency, group_rate_limit
FROM conveyor_queues
WHERE name = %(queue)s FOR UPDATE;

-- name: claim_jobs
-- The claim of the shared backend's transaction (conveyor_work has the same in one function call).
WITH picked AS (
    SELECT id FROM conveyor_jobs
    WHERE status = 'pending' AND group_key IS NULL
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND queue NOT IN (SELECT name FROM conveyor_queues
                        WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE conveyor_jobs j
SET status = 'processing', attempts = j.attempts + 1, worker_id = %(worker_id)s,
    started_at = greatest(%(now)s, j.run_at),
    updated_at = %(now)s, lease_expires_at = %(lease_until)s, status_message = NULL
FROM picked WHERE j.id = picked.id
RETURNING j.id::text, j.type, j.queue, j.priority, j.run_at, j.args, j.attempts, j.attempts_base, j.max_retries,
          j.timeout;

-- name: ready_jobs
-- With limited queues about, the claim reads candidates (these, plus ready_jobs_in_queue of each limited queue up to
-- its allowance), picks the best across all of them (limits.py), then claims those with claim_chosen. Candidates are
-- locked (SKIP LOCKED: another worker's candidates are not waited for); those not chosen are free again at commit.
-- The first column is the candidate's ref: it orders jobs of equal priority and run_at, and claim_chosen takes it.
SELECT id::text, queue, priority, run_at FROM conveyor_jobs
WHERE status = 'pending' AND group_key IS NULL
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND queue NOT IN (SELECT name FROM conveyor_queues
                    WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
ORDER BY priority DESC, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: ready_jobs_in_queue
SELECT id::text, queue, priority, run_at FROM conveyor_jobs
WHERE status = 'pending' AND group_key IS NULL AND queue = %(queue)s
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
ORDER BY priority DESC, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: claim_chosen
UPDATE conveyor_jobs
SET status = 'processing', attempts = attempts + 1, worker_id = %(worker_id)s,
    started_at = greatest(%(now)s, run_at),
    updated_at = %(now)s, lease_expires_at = %(lease_until)s, status_message = NULL
WHERE id = ANY(%(refs)s::uuid[]) AND status = 'pending'
RETURNING id::text, type, queue, priority, run_at, args, attempts, attempts_base, max_retries, timeout, group_key;

-- name: count_processing_in_queue
SELECT count(*) FROM conveyor_jobs WHERE status = 'processing' AND queue = %(queue)s;

-- name: record_queue_starts
UPDATE conveyor_queues SET window_start = %(window_start)s, window_count = %(window_count)s WHERE name = %(queue)s;

-- name: next_run_at
SELECT min(run_at) FROM conveyor_jobs
WHERE status = 'scheduled' AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]));

-- name: has_ready_jobs
SELECT EXISTS (
    SELECT 1 FROM conveyor_jobs
    WHERE (status = 'pending' OR (status = 'scheduled' AND run_at <= %(now)s))
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND queue NOT IN (SELECT name FROM conveyor_queues WHERE paused));

-- name: upsert_worker
INSERT INTO conveyor_workers (id, host, pid, queues, slots, started_at, heartbeat_at, expires_at, types)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::jsonb, %(slots)s, %(started_at)s, %(now)s, %(lease_until)s,
        %(types)s::jsonb)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at,
                               types = excluded.types;

-- name: register_task
INSERT INTO conveyor_tasks (name, queue, priority, max_retries, timeout, updated_at)
VALUES (%(name)s, %(queue)s, %(priority)s, %(max_retries)s, %(timeout)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET queue = excluded.queue, priority = excluded.priority,
                                 max_retries = excluded.max_retries, timeout = excluded.timeout,
                                 updated_at = excluded.updated_at;

-- name: renew_leases
-- Rows another transaction holds are skipped, never waited for: that is the same worker's cycle finishing them (a
-- wait there deadlocked the two, the rows locked in other orders) or a short write; the next beat renews them.
UPDATE conveyor_jobs SET lease_expires_at = %(lease_until)s
WHERE id IN (SELECT id FROM conveyor_jobs
             WHERE status = 'processing' AND worker_id = %(worker_id)s
               AND (%(holding)s::text[] IS NULL OR id::text = ANY(%(holding)s::text[]))
             FOR UPDATE SKIP LOCKED);

-- name: cancel_requests
SELECT id::text FROM conveyor_jobs
WHERE status = 'processing' AND worker_id = %(worker_id)s AND cancel_requested;

-- name: remove_worker
DELETE FROM conveyor_workers WHERE id = %(id)s;

-- name: take_leadership
INSERT INTO conveyor_leaders (role, holder, expires_at) VALUES (%(role)s, %(holder)s, %(until)s)
ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE conveyor_leaders.holder = excluded.holder OR conveyor_leaders.expires_at < %(now)s
RETURNING holder;

-- name: resign_leadership
DELETE FROM conveyor_leaders WHERE holder = %(holder)s;

-- name: rescue_expired
UPDATE conveyor_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts - attempts_base <= max_retries THEN 'pending'
                  ELSE 'failed' END,
    completed_at = CASE WHEN NOT cancel_requested AND attempts - attempts_base <= max_retries
                        THEN NULL ELSE %(now)s END,
    error = CASE WHEN cancel_requested THEN error
                 ELSE 'worker lost: its lease expired during attempt ' || attempts END,
    error_detail = CASE WHEN cancel_requested THEN error_detail END,
    updated_at = %(now)s, lease_expires_at = NULL,
    status_message = 'lease expired (worker lost)'
WHERE id IN (SELECT id FROM conveyor_jobs WHERE status = 'processing' AND lease_expires_at < %(now)s
             ORDER BY id FOR UPDATE SKIP LOCKED);

-- name: prune_finished
DELETE FROM conveyor_jobs WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < %(before)s
      AND NOT (has_dependents AND EXISTS (  -- a parent whose children have not all ended: they need it
          SELECT 1 FROM conveyor_job_deps d JOIN conveyor_jobs c ON c.id = d.child_id
          WHERE d.parent_id = conveyor_jobs.id AND c.status NOT IN ('completed', 'failed', 'cancelled')))
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED);

-- name: purge_jobs
DELETE FROM conveyor_jobs WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE status = ANY(%(statuses)s::text[]) AND completed_at < %(before)s
      AND NOT (has_dependents AND EXISTS (  -- a parent whose children have not all ended: they need it
          SELECT 1 FROM conveyor_job_deps d JOIN conveyor_jobs c ON c.id = d.child_id
          WHERE d.parent_id = conveyor_jobs.id AND c.status NOT IN ('completed', 'failed', 'cancelled')))
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED);

-- name: prune_workers
DELETE FROM conveyor_workers WHERE expires_at < %(before)s;

-- name: cancel_waiting_job
UPDATE conveyor_jobs
SET status = 'cancelled', completed_at = %(now)s, updated_at = %(now)s, status_message = %(message)s
WHERE id = %(id)s::uuid AND status IN ('waiting', 'scheduled', 'pending');

-- name: request_cancel
UPDATE conveyor_jobs SET cancel_requested = true, updated_at = %(now)s
WHERE id = %(id)s::uuid AND status = 'processing';

-- name: retry_job
UPDATE conveyor_jobs
SET status = CASE WHEN deps_remaining > 0 THEN 'waiting' ELSE 'pending' END, attempts_base = attempts,
    run_at = %(now)s, result = NULL, completed_at = NULL, cancel_requested = false, progress = 0,
    progress_info = NULL, blocked_by = NULL, updated_at = %(now)s, status_message = 'retried'
WHERE id = %(id)s::uuid AND status IN ('failed', 'cancelled');

-- name: delete_job
-- A job that others wait for is deleted only once it ended (its waiting children would wait forever).
DELETE FROM conveyor_jobs WHERE id = %(id)s::uuid AND status <> 'processing'
  AND NOT (has_dependents AND status NOT IN ('completed', 'failed', 'cancelled')
           AND EXISTS (SELECT 1 FROM conveyor_job_deps d JOIN conveyor_jobs c ON c.id = d.child_id
                       WHERE d.parent_id = conveyor_jobs.id AND c.status = 'waiting'));

-- name: queue_settings
SELECT name, paused, concurrency, rate_limit, group_concurrency, group_rate_limit, grouped FROM conveyor_queues;

-- name: queue_counts
SELECT queue, status, count(*) AS n FROM conveyor_jobs GROUP BY queue, status;

-- name: ensure_queue
INSERT INTO conveyor_queues (name, updated_at) VALUES (%(name)s, %(now)s) ON CONFLICT (name) DO NOTHING;

-- name: update_queue
UPDATE conveyor_queues
SET paused = coalesce(%(paused)s::boolean, paused),
    concurrency = CASE WHEN %(clear_concurrency)s THEN NULL ELSE coalesce(%(concurrency)s::int, concurrency) END,
    rate_limit = CASE WHEN %(clear_rate_limit)s THEN NULL ELSE coalesce(%(rate_limit)s::float8, rate_limit) END,
    group_concurrency = CASE WHEN %(clear_group_concurrency)s THEN NULL
                             ELSE coalesce(%(group_concurrency)s::int, group_concurrency) END,
    group_rate_limit = CASE WHEN %(clear_group_rate_limit)s THEN NULL
                            ELSE coalesce(%(group_rate_limit)s::float8, group_rate_limit) END,
    grouped = CASE WHEN %(group_concurrency)s::int IS NOT NULL OR %(group_rate_limit)s::float8 IS NOT NULL
                   THEN true ELSE grouped END,
    updated_at = %(now)s
WHERE name = %(name)s;

-- name: live_workers
SELECT w.id, w.host, w.pid, w.queues, w.slots, w.started_at, w.heartbeat_at, w.types,
       coalesce((SELECT array_agg(j.id::text ORDER BY j.id) FROM conveyor_jobs j
                 WHERE j.status = 'processing' AND j.worker_id = w.id), '{}') AS running
FROM conveyor_workers w WHERE w.expires_at >= %(now)s ORDER BY w.started_at;

-- name: live_worker_types
SELECT types FROM conveyor_workers WHERE expires_at >= %(now)s;

-- name: counts_by_type
SELECT type, status, count(*) AS n FROM conveyor_jobs GROUP BY type, status;

-- name: recent_durations
SELECT type, completed_at - started_at AS duration, floor((completed_at - %(since)s) / 60)::int AS minute
FROM conveyor_jobs
WHERE status = 'completed' AND completed_at >= %(since)s AND started_at IS NOT NULL;

-- name: throughput
SELECT floor((completed_at - %(since)s) / 60)::int AS minute, status, count(*) AS n FROM conveyor_jobs
WHERE status IN ('completed', 'failed') AND completed_at >= %(since)s
GROUP BY 1, 2;

-- name: changes_since
-- Only rows of transactions older than every running one, so that a smaller id committed later is not skipped by a
-- reader that already moved past it; rows older than 5 s pass anyway, so that a long transaction elsewhere in the
-- cluster delays live streams by 5 s at most (an event written by a transaction open longer than that may be missed
-- by a stream that is already past it; the job itself is always right).
SELECT id, job_id::text, at FROM conveyor_job_events
WHERE id > %(after_id)s
  AND (xid < pg_snapshot_xmin(pg_current_snapshot()) OR at < extract(epoch FROM now()) - 5)
ORDER BY id LIMIT %(limit)s;

-- name: last_change_id
SELECT coalesce(max(id), 0) FROM conveyor_job_events
WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) OR at < extract(epoch FROM now()) - 5;

-- name: prune_changes
DELETE FROM conveyor_job_events
WHERE to_status IS NULL AND at < %(before)s AND id < (SELECT max(id) FROM conveyor_job_events);
