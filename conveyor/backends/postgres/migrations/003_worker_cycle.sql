-- Conveyor schema for PostgreSQL, migration 3: a worker's whole cycle as one function call.
-- A worker cycle writes the outcomes of the jobs it finished and its progress, then claims jobs for its free slots.
-- As one statement it is one round trip and its own transaction (no BEGIN and COMMIT round trips), the client encodes
-- each batch as one JSON document instead of adapting arrays element by element, and the function writes its jobs'
-- history itself instead of leaving it to the generic update trigger (whose join of old and new rows cost a quarter
-- of what PostgreSQL spent on a no-op job). Queues with a concurrency or rate limit need the per-queue locking claim
-- (postgres.py: _claim_with_limits, with claim_jobs_with_limits, promote_due and next_run_at of postgres.sql): it
-- calls this function for the outcomes only (p_worker NULL) and claims in the same transaction. Keep the two in step.

-- The update trigger of migration 1, but for statements of conveyor_work, which record their history themselves
-- (the transaction-local setting `conveyor.history` says so while that function runs).
CREATE OR REPLACE FUNCTION conveyor_jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ready boolean;
BEGIN
    IF current_setting('conveyor.history', true) = 'written' THEN
        RETURN NULL;
    END IF;
    WITH changed AS (
        SELECT n.id, n.updated_at, n.worker_id, n.status_message, n.cancel_requested,
               o.status AS old_status, n.status AS new_status,
               o.cancel_requested IS DISTINCT FROM n.cancel_requested AS cancel_changed
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE o.status IS DISTINCT FROM n.status OR o.progress IS DISTINCT FROM n.progress
           OR o.progress_info IS DISTINCT FROM n.progress_info
           OR o.cancel_requested IS DISTINCT FROM n.cancel_requested
    ), written AS (
        INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
        SELECT id, updated_at,
               CASE WHEN old_status <> new_status THEN old_status END,
               CASE WHEN old_status <> new_status THEN new_status END,
               worker_id,
               CASE WHEN old_status <> new_status THEN status_message
                    WHEN cancel_changed THEN 'cancel requested'
                    ELSE 'progress' END
        FROM changed
        RETURNING to_status
    )
    SELECT bool_or(to_status IN ('pending', 'scheduled')) INTO ready FROM written;
    IF ready IS NOT NULL THEN
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    IF ready THEN
        PERFORM pg_notify('conveyor_ready', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION conveyor_work(
    p_now         double precision,
    p_completed   jsonb,             -- [{id, worker_id, attempt, result}] or NULL
    p_failed      jsonb,             -- [{id, worker_id, attempt, error, detail, retry_at}] or NULL
    p_cancelled   jsonb,             -- [{id, worker_id, attempt, reason}] or NULL
    p_released    jsonb,             -- [{id, worker_id, attempt, reason}] or NULL
    p_progress    jsonb,             -- [{id, worker_id, attempt, progress, info}] or NULL
    p_worker      text,              -- the claiming worker; NULL: no claim
    p_limit       integer,
    p_lease_until double precision,
    p_queues      text[],
    p_types       text[]
) RETURNS jsonb                      -- {"lost": [ids whose lease was gone], "jobs": [[claimed row]], "next_run_at"}
LANGUAGE plpgsql VOLATILE
-- Claims must walk the ready index in its order and stop after `limit` rows (see claim_plan in postgres.sql), and a
-- batch must find its jobs by id, by primary key (`id = ANY(...)`): with a queue table's usual stale statistics the
-- planner would rather join a batch of ten with every entry of the running index, dead ones included (ten times the
-- buffers). Plans are generic: replanning these statements at every call cost more than running them.
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    lost     jsonb := '[]';
    part     jsonb;
    jobs     jsonb;
    claimed  integer := 0;
    next_at  double precision;
    written  integer;
    changed  boolean := false;  -- any job changed: wake live event streams (conveyor_changes)
    ready    boolean := false;  -- a job became pending or scheduled: wake idle workers (conveyor_ready)
    woke     boolean;
BEGIN
    IF p_completed IS NULL AND p_failed IS NULL AND p_cancelled IS NULL AND p_released IS NULL THEN
        -- Nothing finished: a lost claim is a worker that died before starting (see finish_and_claim).
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    PERFORM set_config('conveyor.history', 'written', true);  -- reset below, before returning

    IF p_progress IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_progress)
                AS o(id uuid, worker_id text, attempt integer, progress integer, info jsonb)
        ), moved AS (
            UPDATE conveyor_jobs j
            SET progress = o.progress, progress_info = o.info, updated_at = p_now
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
              AND (j.progress IS DISTINCT FROM o.progress OR j.progress_info IS DISTINCT FROM o.info)
            RETURNING j.id, j.worker_id
        )
        INSERT INTO conveyor_job_events (job_id, at, worker_id, message)
        SELECT id, p_now, worker_id, 'progress' FROM moved;
        GET DIAGNOSTICS written = ROW_COUNT;
        changed := changed OR written > 0;
    END IF;

    IF p_completed IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_completed) AS o(id uuid, worker_id text, attempt integer, result jsonb)
        ), moved AS (
            UPDATE conveyor_jobs j
            SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'completed' END,
                result = CASE WHEN j.cancel_requested THEN NULL ELSE o.result END,
                progress = CASE WHEN j.cancel_requested THEN j.progress ELSE 100 END,
                completed_at = p_now, updated_at = p_now, lease_expires_at = NULL,
                status_message = CASE WHEN j.cancel_requested THEN 'cancelled while running' END
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id, j.status, j.worker_id, j.status_message
        ), history AS (
            INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
            SELECT id, p_now, 'processing', status, worker_id, status_message FROM moved
        )
        SELECT jsonb_agg(o.id) INTO part FROM o WHERE o.id NOT IN (SELECT id FROM moved);
        lost := lost || coalesce(part, '[]');
        changed := true;
    END IF;

    IF p_failed IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_failed)
                AS o(id uuid, worker_id text, attempt integer, error text, detail text, retry_at double precision)
        ), moved AS (
            UPDATE conveyor_jobs j
            SET status = CASE WHEN j.cancel_requested THEN 'cancelled'
                              WHEN o.retry_at IS NOT NULL AND j.attempts - j.attempts_base <= j.max_retries
                              THEN 'scheduled'
                              ELSE 'failed' END,
                run_at = CASE WHEN NOT j.cancel_requested AND o.retry_at IS NOT NULL
                                   AND j.attempts - j.attempts_base <= j.max_retries
                              THEN o.retry_at ELSE j.run_at END,
                completed_at = CASE WHEN NOT j.cancel_requested AND o.retry_at IS NOT NULL
                                         AND j.attempts - j.attempts_base <= j.max_retries
                                    THEN NULL ELSE p_now END,
                error = o.error, error_detail = o.detail, updated_at = p_now, lease_expires_at = NULL,
                status_message = o.error
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id, j.status, j.worker_id, j.status_message
        ), history AS (
            INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
            SELECT id, p_now, 'processing', status, worker_id, status_message FROM moved
        )
        SELECT (SELECT jsonb_agg(o.id) FROM o WHERE o.id NOT IN (SELECT id FROM moved)),
               (SELECT bool_or(status = 'scheduled') FROM moved)
        INTO part, woke;
        lost := lost || coalesce(part, '[]');
        changed := true;
        ready := ready OR coalesce(woke, false);
    END IF;

    IF p_cancelled IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_cancelled) AS o(id uuid, worker_id text, attempt integer, reason text)
        ), moved AS (
            UPDATE conveyor_jobs j
            SET status = 'cancelled', completed_at = p_now, updated_at = p_now, lease_expires_at = NULL,
                status_message = o.reason
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id, j.status, j.worker_id, j.status_message
        ), history AS (
            INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
            SELECT id, p_now, 'processing', status, worker_id, status_message FROM moved
        )
        SELECT jsonb_agg(o.id) INTO part FROM o WHERE o.id NOT IN (SELECT id FROM moved);
        lost := lost || coalesce(part, '[]');
        changed := true;
    END IF;

    IF p_released IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_released) AS o(id uuid, worker_id text, attempt integer, reason text)
        ), moved AS (
            UPDATE conveyor_jobs j
            SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'pending' END,
                completed_at = CASE WHEN j.cancel_requested THEN p_now END,
                attempts_base = j.attempts_base + 1, updated_at = p_now, lease_expires_at = NULL,
                status_message = o.reason
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id, j.status, j.worker_id, j.status_message
        ), history AS (
            INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
            SELECT id, p_now, 'processing', status, worker_id, status_message FROM moved
        )
        SELECT (SELECT jsonb_agg(o.id) FROM o WHERE o.id NOT IN (SELECT id FROM moved)),
               (SELECT bool_or(status = 'pending') FROM moved)
        INTO part, woke;
        lost := lost || coalesce(part, '[]');
        changed := true;
        ready := ready OR coalesce(woke, false);
    END IF;

    IF p_worker IS NOT NULL AND p_limit > 0 THEN
        WITH promoted AS (
            UPDATE conveyor_jobs
            SET status = 'pending', updated_at = p_now, status_message = 'due'
            WHERE id IN (SELECT id FROM conveyor_jobs WHERE status = 'scheduled' AND run_at <= p_now
                         ORDER BY run_at LIMIT 10000 FOR UPDATE SKIP LOCKED)
            RETURNING id, worker_id
        )
        INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
        SELECT id, p_now, 'scheduled', 'pending', worker_id, 'due' FROM promoted;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written > 0 THEN
            changed := true;
            ready := true;  -- more may be pending now than this worker takes
        END IF;

        WITH picked AS (
            SELECT id FROM conveyor_jobs
            WHERE status = 'pending'
              AND (p_queues IS NULL OR queue = ANY(p_queues))
              AND (p_types IS NULL OR type = ANY(p_types))
              AND queue NOT IN (SELECT name FROM conveyor_queues
                                WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL)
            ORDER BY priority DESC, run_at, id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), taken AS (
            UPDATE conveyor_jobs j
            SET status = 'processing', attempts = j.attempts + 1, worker_id = p_worker, started_at = p_now,
                updated_at = p_now, lease_expires_at = p_lease_until, status_message = NULL
            FROM picked WHERE j.id = picked.id
            RETURNING j.id, j.type, j.queue, j.priority, j.run_at, j.args, j.attempts, j.attempts_base,
                      j.max_retries, j.timeout
        ), history AS (
            INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id)
            SELECT id, p_now, 'pending', 'processing', p_worker FROM taken
        )
        SELECT jsonb_agg(jsonb_build_array(id, type, queue, priority, run_at, args, attempts, attempts_base,
                                           max_retries, timeout)),
               count(*)
        INTO jobs, claimed FROM taken;
        changed := changed OR claimed > 0;

        IF claimed < p_limit THEN  -- a full claim brings the worker back at once; only a short one needs to know
            SELECT min(run_at) INTO next_at FROM conveyor_jobs
            WHERE status = 'scheduled' AND (p_queues IS NULL OR queue = ANY(p_queues));
        END IF;
    END IF;

    PERFORM set_config('conveyor.history', '', true);
    IF changed THEN
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    IF ready THEN
        PERFORM pg_notify('conveyor_ready', '');
    END IF;
    RETURN jsonb_build_object('lost', lost, 'jobs', coalesce(jobs, '[]'::jsonb), 'next_run_at', next_at);
END $$;
