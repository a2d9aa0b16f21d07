-- Conveyor schema for PostgreSQL, migration 4: workers say which task types they run, so a job of a type that no live
-- worker runs is shown as such (and no worker claims what it cannot run); the task registry, so the SQL API's
-- enqueue gives a job its task's defaults like every other path; a completed job shows no error of an earlier attempt
-- (its history keeps it).

ALTER TABLE conveyor_workers ADD COLUMN types jsonb;  -- NULL: runs any type (an HTTP worker that names none)

-- Each task's effective defaults, written by every process that starts a worker (`@app.task(...)` and the settings).
CREATE TABLE conveyor_tasks (
    name        text PRIMARY KEY,
    queue       text NOT NULL,
    priority    integer NOT NULL,
    max_retries integer NOT NULL,
    timeout     double precision,
    updated_at  double precision NOT NULL
);

-- A completed job keeps no error of an earlier, failed attempt. A row trigger whose condition PostgreSQL checks in C:
-- it calls the function only for a job that completes with an error set (one that was retried), so it costs the
-- common completion nothing, and it covers every writer (conveyor_work, the shared backend, SQL of other services).
CREATE FUNCTION conveyor_jobs_completed_clean() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.error := NULL;
    NEW.error_detail := NULL;
    RETURN NEW;
END $$;

CREATE TRIGGER conveyor_jobs_completed_clean BEFORE UPDATE OF status ON conveyor_jobs
    FOR EACH ROW WHEN (NEW.status = 'completed' AND (NEW.error IS NOT NULL OR NEW.error_detail IS NOT NULL))
    EXECUTE FUNCTION conveyor_jobs_completed_clean();

-- conveyor.enqueue: options left NULL take the registered task's defaults (then 'default', 0, 3 retries), as
-- `JobOptions.resolve` does in Python. A type no process has registered yet is accepted: its job waits, pending, for
-- a worker that runs it (`/stats` lists it under `unserved`).
DROP FUNCTION conveyor.enqueue(text, jsonb, text, integer, integer, double precision, double precision, timestamptz,
                               text[], jsonb, text);

CREATE FUNCTION conveyor.enqueue(
    type        text,
    args        jsonb DEFAULT '{}',
    queue       text DEFAULT NULL,
    priority    integer DEFAULT NULL,
    max_retries integer DEFAULT NULL,
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
    task    conveyor_tasks%ROWTYPE;
    retries integer;
    new_id  uuid;
BEGIN
    IF enqueue.type IS NULL OR enqueue.type = '' THEN
        RAISE EXCEPTION 'conveyor.enqueue: type must be a non-empty string' USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(coalesce(enqueue.args, '{}')) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF enqueue.delay IS NOT NULL AND enqueue.run_at IS NOT NULL THEN
        RAISE EXCEPTION 'conveyor.enqueue: give delay or run_at, not both' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO task FROM conveyor_tasks t WHERE t.name = enqueue.type;
    retries := coalesce(enqueue.max_retries, task.max_retries, 3);
    IF retries < 0 THEN
        RAISE EXCEPTION 'conveyor.enqueue: max_retries must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    start_s := coalesce(extract(epoch FROM enqueue.run_at), now_s + greatest(coalesce(enqueue.delay, 0), 0));
    INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                               unique_key, created_at, updated_at)
    VALUES (conveyor.uuid7(), enqueue.type, coalesce(enqueue.queue, task.queue, 'default'),
            CASE WHEN start_s > now_s THEN 'scheduled' ELSE 'pending' END,
            coalesce(enqueue.priority, task.priority, 0), coalesce(enqueue.args, '{}'), retries,
            coalesce(enqueue.timeout, task.timeout), greatest(start_s, now_s), to_jsonb(coalesce(enqueue.tags, '{}')),
            coalesce(enqueue.metadata, '{}'), enqueue.unique_key, now_s, now_s)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing')
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT id INTO new_id FROM conveyor_jobs
        WHERE unique_key = enqueue.unique_key AND status IN ('scheduled', 'pending', 'processing');
    END IF;
    RETURN new_id;
END $$;

CREATE OR REPLACE VIEW conveyor.workers AS
SELECT id, host, pid, queues, slots, to_timestamp(started_at) AS started_at,
       to_timestamp(heartbeat_at) AS heartbeat_at, types
FROM conveyor_workers WHERE expires_at >= extract(epoch FROM clock_timestamp());
