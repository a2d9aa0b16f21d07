-- Conveyor schema for PostgreSQL, migration 3: a worker's whole cycle as one function call.
-- A worker cycle writes the outcomes of the jobs it finished and its progress, then claims jobs for its free slots.
-- As one statement it is one round trip and its own transaction (no BEGIN and COMMIT round trips), and the client
-- encodes each batch as one JSON document instead of adapting arrays element by element; that halves what a no-op job
-- costs the worker and the database. Queues with a concurrency or rate limit need the per-queue locking claim
-- (postgres.py: _claim_with_limits, with claim_jobs_with_limits, promote_due and next_run_at of postgres.sql): it
-- calls this function for the outcomes only (p_worker NULL) and claims in the same transaction. Keep the two in step.

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
    lost    jsonb := '[]';
    part    jsonb;
    jobs    jsonb;
    claimed integer := 0;
    next_at double precision;
BEGIN
    IF p_completed IS NULL AND p_failed IS NULL AND p_cancelled IS NULL AND p_released IS NULL THEN
        -- Nothing finished: a lost claim is a worker that died before starting (see finish_and_claim).
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    IF p_progress IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_progress)
                AS o(id uuid, worker_id text, attempt integer, progress integer, info jsonb)
        )
        UPDATE conveyor_jobs j
        SET progress = o.progress, progress_info = o.info, updated_at = p_now
        FROM o
        WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
          AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt;
    END IF;

    IF p_completed IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_completed) AS o(id uuid, worker_id text, attempt integer, result jsonb)
        ), written AS (
            UPDATE conveyor_jobs j
            SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'completed' END,
                result = CASE WHEN j.cancel_requested THEN NULL ELSE o.result END,
                progress = CASE WHEN j.cancel_requested THEN j.progress ELSE 100 END,
                completed_at = p_now, updated_at = p_now, lease_expires_at = NULL,
                status_message = CASE WHEN j.cancel_requested THEN 'cancelled while running' END
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id
        )
        SELECT jsonb_agg(o.id) INTO part FROM o WHERE o.id NOT IN (SELECT id FROM written);
        lost := lost || coalesce(part, '[]');
    END IF;

    IF p_failed IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_failed)
                AS o(id uuid, worker_id text, attempt integer, error text, detail text, retry_at double precision)
        ), written AS (
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
            RETURNING j.id
        )
        SELECT jsonb_agg(o.id) INTO part FROM o WHERE o.id NOT IN (SELECT id FROM written);
        lost := lost || coalesce(part, '[]');
    END IF;

    IF p_cancelled IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_cancelled) AS o(id uuid, worker_id text, attempt integer, reason text)
        ), written AS (
            UPDATE conveyor_jobs j
            SET status = 'cancelled', completed_at = p_now, updated_at = p_now, lease_expires_at = NULL,
                status_message = o.reason
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id
        )
        SELECT jsonb_agg(o.id) INTO part FROM o WHERE o.id NOT IN (SELECT id FROM written);
        lost := lost || coalesce(part, '[]');
    END IF;

    IF p_released IS NOT NULL THEN
        WITH o AS (
            SELECT * FROM jsonb_to_recordset(p_released) AS o(id uuid, worker_id text, attempt integer, reason text)
        ), written AS (
            UPDATE conveyor_jobs j
            SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'pending' END,
                completed_at = CASE WHEN j.cancel_requested THEN p_now END,
                attempts_base = j.attempts_base + 1, updated_at = p_now, lease_expires_at = NULL,
                status_message = o.reason
            FROM o
            WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
              AND j.status = 'processing' AND j.worker_id = o.worker_id AND j.attempts = o.attempt
            RETURNING j.id
        )
        SELECT jsonb_agg(o.id) INTO part FROM o WHERE o.id NOT IN (SELECT id FROM written);
        lost := lost || coalesce(part, '[]');
    END IF;

    IF p_worker IS NULL OR p_limit <= 0 THEN
        RETURN jsonb_build_object('lost', lost, 'jobs', '[]'::jsonb);
    END IF;

    UPDATE conveyor_jobs
    SET status = 'pending', updated_at = p_now, status_message = 'due'
    WHERE id IN (SELECT id FROM conveyor_jobs WHERE status = 'scheduled' AND run_at <= p_now
                 ORDER BY run_at LIMIT 10000 FOR UPDATE SKIP LOCKED);

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
        RETURNING j.id, j.type, j.queue, j.priority, j.run_at, j.args, j.attempts, j.attempts_base, j.max_retries,
                  j.timeout
    )
    SELECT jsonb_agg(jsonb_build_array(id, type, queue, priority, run_at, args, attempts, attempts_base,
                                       max_retries, timeout)),
           count(*)
    INTO jobs, claimed FROM taken;

    IF claimed < p_limit THEN  -- a full claim brings the worker back at once; only a short one needs to know
        SELECT min(run_at) INTO next_at FROM conveyor_jobs
        WHERE status = 'scheduled' AND (p_queues IS NULL OR queue = ANY(p_queues));
    END IF;
    RETURN jsonb_build_object('lost', lost, 'jobs', coalesce(jobs, '[]'::jsonb), 'next_run_at', next_at);
END $$;
