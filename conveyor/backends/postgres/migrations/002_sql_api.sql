-- Conveyor schema for PostgreSQL, migration 2: the SQL-level API, for services in any language.
-- Schema `conveyor` holds only the public surface: functions to enqueue and steer jobs, and read views with
-- timestamptz times. The tables (`conveyor_*` in the current schema) are internal. See docs/postgres.md.

CREATE SCHEMA IF NOT EXISTS conveyor;

-- A UUIDv7 (time-ordered, like the ids Python makes): 48 bits of milliseconds, then random bits.
CREATE FUNCTION conveyor.uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                                                  FROM 3)
                                FROM 1 FOR 6), 52, 1), 53, 1),
        'hex')::uuid
$$;

-- Enqueue one job; returns its id (with a `unique_key` an open job holds: that job's id). The arguments are stored
-- as given: the worker validates them against the task's type hints when it runs the job.
CREATE FUNCTION conveyor.enqueue(
    type        text,
    args        jsonb DEFAULT '{}',
    queue       text DEFAULT 'default',
    priority    integer DEFAULT 0,
    max_retries integer DEFAULT 3,
    timeout     double precision DEFAULT NULL,
    delay       double precision DEFAULT NULL,
    run_at      timestamptz DEFAULT NULL,
    tags        text[] DEFAULT '{}',
    metadata    jsonb DEFAULT '{}',
    unique_key  text DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    now_s   double precision := extract(epoch FROM clock_timestamp());
    start_s double precision;
    new_id  uuid;
BEGIN
    IF enqueue.type IS NULL OR enqueue.type = '' THEN
        RAISE EXCEPTION 'conveyor.enqueue: type must be a non-empty string' USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(coalesce(enqueue.args, '{}')) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF enqueue.max_retries IS NULL OR enqueue.max_retries < 0 THEN
        RAISE EXCEPTION 'conveyor.enqueue: max_retries must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    IF enqueue.delay IS NOT NULL AND enqueue.run_at IS NOT NULL THEN
        RAISE EXCEPTION 'conveyor.enqueue: give delay or run_at, not both' USING ERRCODE = '22023';
    END IF;
    start_s := coalesce(extract(epoch FROM enqueue.run_at), now_s + greatest(coalesce(enqueue.delay, 0), 0));
    INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                               unique_key, created_at, updated_at)
    VALUES (conveyor.uuid7(), enqueue.type, coalesce(enqueue.queue, 'default'),
            CASE WHEN start_s > now_s THEN 'scheduled' ELSE 'pending' END,
            coalesce(enqueue.priority, 0), coalesce(enqueue.args, '{}'), enqueue.max_retries, enqueue.timeout,
            greatest(start_s, now_s), to_jsonb(coalesce(enqueue.tags, '{}')), coalesce(enqueue.metadata, '{}'),
            enqueue.unique_key, now_s, now_s)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing')
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT id INTO new_id FROM conveyor_jobs
        WHERE unique_key = enqueue.unique_key AND status IN ('scheduled', 'pending', 'processing');
    END IF;
    RETURN new_id;
END $$;

-- Cancel a job: a waiting one at once, a running one by request (its worker stops it). Returns the job's status
-- afterwards (`cancelled`, or `processing` while the request is pending); NULL for an unknown id.
CREATE FUNCTION conveyor.cancel(job_id uuid) RETURNS text LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    st    text;
BEGIN
    UPDATE conveyor_jobs SET status = 'cancelled', completed_at = now_s, updated_at = now_s,
                             status_message = 'cancelled'
    WHERE id = cancel.job_id AND status IN ('scheduled', 'pending');
    UPDATE conveyor_jobs SET cancel_requested = true, updated_at = now_s
    WHERE id = cancel.job_id AND status = 'processing' AND NOT cancel_requested;
    SELECT status INTO st FROM conveyor_jobs WHERE id = cancel.job_id;
    RETURN st;
END $$;

-- Retry a failed or cancelled job: pending again with a fresh retry budget (attempts keep counting). Returns the
-- status afterwards (`pending` if it was retried); NULL for an unknown id.
CREATE FUNCTION conveyor.retry(job_id uuid) RETURNS text LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    st    text;
BEGIN
    UPDATE conveyor_jobs
    SET status = 'pending', attempts_base = attempts, run_at = now_s, result = NULL, completed_at = NULL,
        cancel_requested = false, progress = 0, progress_info = NULL, updated_at = now_s, status_message = 'retried'
    WHERE id = retry.job_id AND status IN ('failed', 'cancelled');
    SELECT status INTO st FROM conveyor_jobs WHERE id = retry.job_id;
    RETURN st;
END $$;

CREATE VIEW conveyor.jobs AS
SELECT id, type, queue, status, priority, args, result, error, error_detail, progress, progress_info, attempts,
       max_retries, timeout, to_timestamp(run_at) AS run_at, tags, metadata, unique_key,
       to_timestamp(created_at) AS created_at, to_timestamp(updated_at) AS updated_at,
       to_timestamp(started_at) AS started_at, to_timestamp(completed_at) AS completed_at, worker_id,
       cancel_requested
FROM conveyor_jobs;

CREATE VIEW conveyor.job_events AS
SELECT id, job_id, to_timestamp(at) AS at, from_status, to_status, worker_id, message
FROM conveyor_job_events WHERE to_status IS NOT NULL;

CREATE VIEW conveyor.queues AS
SELECT q.name, coalesce(s.paused, false) AS paused, s.concurrency, s.rate_limit,
       count(j.id) FILTER (WHERE j.status = 'pending') AS pending,
       count(j.id) FILTER (WHERE j.status = 'scheduled') AS scheduled,
       count(j.id) FILTER (WHERE j.status = 'processing') AS processing
FROM (SELECT name FROM conveyor_queues UNION SELECT DISTINCT queue FROM conveyor_jobs) q
LEFT JOIN conveyor_queues s ON s.name = q.name
LEFT JOIN conveyor_jobs j ON j.queue = q.name
GROUP BY q.name, s.paused, s.concurrency, s.rate_limit;

CREATE VIEW conveyor.workers AS
SELECT id, host, pid, queues, slots, to_timestamp(started_at) AS started_at,
       to_timestamp(heartbeat_at) AS heartbeat_at
FROM conveyor_workers WHERE expires_at >= extract(epoch FROM clock_timestamp());
