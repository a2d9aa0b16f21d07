-- Conveyor schema for PostgreSQL, migration 7: job dependencies and workflows (SPEC section 7).
-- A job enqueued with `depends_on` starts `waiting`. New columns: `deps_remaining` (parents not completed yet),
-- `has_dependents` (the job has children: only such jobs run the dependency triggers, whose WHEN condition
-- PostgreSQL checks in C, so an ordinary job pays nothing), `blocked_by` (the parent whose failure cancelled this
-- job: retrying that parent puts it back in `waiting`), `workflow_id` and `step`.
-- The triggers are row triggers on conveyor_jobs, so every writer releases children in its own statement: the
-- worker cycle (`conveyor_work`), the locking claim's outcomes, cancel and retry, SQL of other services.

ALTER TABLE conveyor_jobs DROP CONSTRAINT conveyor_jobs_status_check;
ALTER TABLE conveyor_jobs ADD CONSTRAINT conveyor_jobs_status_check CHECK (status IN
    ('waiting', 'scheduled', 'pending', 'processing', 'completed', 'failed', 'cancelled'));
ALTER TABLE conveyor_jobs
    ADD COLUMN deps_remaining integer NOT NULL DEFAULT 0,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN blocked_by     uuid,
    ADD COLUMN workflow_id    uuid,
    ADD COLUMN step           text;

CREATE INDEX conveyor_jobs_workflow ON conveyor_jobs (workflow_id) WHERE workflow_id IS NOT NULL;
CREATE INDEX conveyor_jobs_blocked ON conveyor_jobs (blocked_by) WHERE blocked_by IS NOT NULL;

-- One row per dependency. The primary key serves "the children of this parent" (a completion reads only its own
-- children); the second index "the parents of this child" (depends_on, parent_results).
CREATE TABLE conveyor_job_deps (
    parent_id uuid NOT NULL,
    child_id  uuid NOT NULL,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX conveyor_job_deps_child ON conveyor_job_deps (child_id);

CREATE TABLE conveyor_workflows (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    metadata     jsonb NOT NULL DEFAULT '{}',
    steps_total  integer NOT NULL,
    steps_done   integer NOT NULL DEFAULT 0,   -- steps completed
    steps_ended  integer NOT NULL DEFAULT 0,   -- steps in a terminal state (completed, failed or cancelled)
    cancelled    boolean NOT NULL DEFAULT false,  -- cancelled as a whole: it ends `cancelled` rather than `failed`
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    completed_at double precision
);
CREATE INDEX conveyor_workflows_created ON conveyor_workflows (created_at);

-- The statements below write their own history (as conveyor_work does): the generic update trigger is told to skip
-- them, then the setting is put back as it was (inside conveyor_work it stays 'written').
CREATE FUNCTION conveyor_jobs_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev     text := coalesce(current_setting('conveyor.history', true), '');
    released integer;
BEGIN
    PERFORM set_config('conveyor.history', 'written', true);
    -- One statement: every child has one parent fewer to wait for; a waiting child with none left is ready. Only
    -- such a child can be pending or scheduled afterwards (a child is released once: its counter reaches 0 once).
    WITH moved AS (
        UPDATE conveyor_jobs c
        SET deps_remaining = c.deps_remaining - 1,
            status = CASE WHEN c.status <> 'waiting' OR c.deps_remaining > 1 THEN c.status
                          WHEN c.run_at > NEW.updated_at THEN 'scheduled' ELSE 'pending' END,
            run_at = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= 1
                          THEN greatest(c.run_at, NEW.updated_at) ELSE c.run_at END,
            updated_at = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= 1
                              THEN NEW.updated_at ELSE c.updated_at END,
            status_message = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= 1
                                  THEN 'parents completed' ELSE c.status_message END
        FROM conveyor_job_deps d
        WHERE d.parent_id = NEW.id AND c.id = d.child_id
        RETURNING c.id, c.status
    )
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
    SELECT id, NEW.updated_at, 'waiting', status, 'parents completed' FROM moved
    WHERE status IN ('pending', 'scheduled');
    GET DIAGNOSTICS released = ROW_COUNT;
    PERFORM set_config('conveyor.history', prev, true);
    IF released > 0 THEN
        PERFORM pg_notify('conveyor_ready', '');
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_release AFTER UPDATE OF status ON conveyor_jobs FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status <> NEW.status AND NEW.status = 'completed')
    EXECUTE FUNCTION conveyor_jobs_release();

-- A parent failed or was cancelled (by itself, not by the cascade): its waiting descendants, transitively, are
-- cancelled in one statement, each saying which parent it was.
CREATE FUNCTION conveyor_jobs_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev text := coalesce(current_setting('conveyor.history', true), '');
    why  text := 'parent ' || coalesce('step ''' || NEW.step || ''' (job ' || NEW.id || ')', 'job ' || NEW.id)
                 || ' ' || NEW.status;
    n    integer;
BEGIN
    PERFORM set_config('conveyor.history', 'written', true);
    WITH RECURSIVE below(id) AS (
        SELECT child_id FROM conveyor_job_deps WHERE parent_id = NEW.id
        UNION
        SELECT d.child_id FROM conveyor_job_deps d JOIN below ON d.parent_id = below.id
    ), moved AS (
        UPDATE conveyor_jobs c
        SET status = 'cancelled', blocked_by = NEW.id, completed_at = NEW.updated_at, updated_at = NEW.updated_at,
            error = why, status_message = why
        WHERE c.id IN (SELECT id FROM below) AND c.status = 'waiting'
        RETURNING c.id
    )
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
    SELECT id, NEW.updated_at, 'waiting', 'cancelled', why FROM moved;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('conveyor.history', prev, true);
    IF n > 0 THEN
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_cascade AFTER UPDATE OF status ON conveyor_jobs FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status <> NEW.status AND NEW.status IN ('failed', 'cancelled')
          AND NEW.blocked_by IS NULL)
    EXECUTE FUNCTION conveyor_jobs_cascade();

-- A failed or cancelled parent is retried: the jobs its failure cancelled wait for it again.
CREATE FUNCTION conveyor_jobs_restore() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev text := coalesce(current_setting('conveyor.history', true), '');
    n    integer;
BEGIN
    PERFORM set_config('conveyor.history', 'written', true);
    WITH moved AS (
        UPDATE conveyor_jobs c
        SET status = 'waiting', blocked_by = NULL, error = NULL, completed_at = NULL, updated_at = NEW.updated_at,
            status_message = 'parent retried'
        WHERE c.blocked_by = NEW.id AND c.status = 'cancelled'
        RETURNING c.id
    )
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
    SELECT id, NEW.updated_at, 'cancelled', 'waiting', 'parent retried' FROM moved;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- Those that still have another failed or cancelled parent (or ancestor) are cancelled again, by that one.
    WITH RECURSIVE mine(id) AS (
        SELECT child_id FROM conveyor_job_deps WHERE parent_id = NEW.id
        UNION
        SELECT d.child_id FROM conveyor_job_deps d JOIN mine ON d.parent_id = mine.id
    ), dead(root, id) AS (
        SELECT coalesce(p.blocked_by, p.id), d.child_id
        FROM conveyor_job_deps d JOIN conveyor_jobs p ON p.id = d.parent_id
        WHERE d.child_id IN (SELECT id FROM mine) AND p.status IN ('failed', 'cancelled')
        UNION
        SELECT dead.root, d.child_id FROM conveyor_job_deps d JOIN dead ON d.parent_id = dead.id
    ), blocker AS (
        SELECT dead.id, min(dead.root::text)::uuid AS root FROM dead GROUP BY dead.id
    ), moved AS (
        UPDATE conveyor_jobs c
        SET status = 'cancelled', completed_at = NEW.updated_at, updated_at = NEW.updated_at, blocked_by = b.root,
            error = 'parent job ' || b.root || ' ' || coalesce((SELECT r.status FROM conveyor_jobs r
                                                                WHERE r.id = b.root), 'ended'),
            status_message = 'another parent failed or was cancelled'
        FROM blocker b
        WHERE c.id = b.id AND c.status = 'waiting'
        RETURNING c.id
    )
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
    SELECT id, NEW.updated_at, 'waiting', 'cancelled', 'another parent failed or was cancelled' FROM moved;
    PERFORM set_config('conveyor.history', prev, true);
    IF n > 0 THEN
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_restore AFTER UPDATE OF status ON conveyor_jobs FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status IN ('failed', 'cancelled')
          AND NEW.status IN ('waiting', 'pending', 'scheduled'))
    EXECUTE FUNCTION conveyor_jobs_restore();

-- A workflow's step moved into or out of a terminal state: its counters and its status, in one statement.
CREATE FUNCTION conveyor_jobs_workflow_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended integer := CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN 1 ELSE -1 END;
    done  integer := (NEW.status = 'completed')::integer - (OLD.status = 'completed')::integer;
BEGIN
    UPDATE conveyor_workflows w
    SET steps_done = w.steps_done + done, steps_ended = w.steps_ended + ended, updated_at = NEW.updated_at,
        status = CASE WHEN w.steps_ended + ended < w.steps_total THEN 'running'
                      WHEN w.steps_done + done = w.steps_total THEN 'completed'
                      WHEN w.cancelled THEN 'cancelled'
                      ELSE 'failed' END,
        completed_at = CASE WHEN w.steps_ended + ended < w.steps_total THEN NULL ELSE NEW.updated_at END
    WHERE w.id = NEW.workflow_id;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_workflow_step AFTER UPDATE OF status ON conveyor_jobs FOR EACH ROW
    WHEN (NEW.workflow_id IS NOT NULL AND OLD.status <> NEW.status
          AND (OLD.status IN ('completed', 'failed', 'cancelled')) <> (NEW.status IN ('completed', 'failed', 'cancelled')))
    EXECUTE FUNCTION conveyor_jobs_workflow_step();

CREATE FUNCTION conveyor_jobs_deps_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conveyor_job_deps d USING old_rows o WHERE d.child_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_deps_deleted AFTER DELETE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_deps_deleted();

-- The SQL API (migration 2) knows dependencies: enqueue takes `depends_on` (the job waits in `waiting`; an unknown
-- parent is refused; a parent that already failed or was cancelled makes the job `cancelled`, naming it), cancel
-- takes a waiting job, retry puts a job back in `waiting` while a parent is not completed.
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
    unique_key  text DEFAULT NULL,
    depends_on  uuid[] DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    now_s     double precision := extract(epoch FROM clock_timestamp());
    start_s   double precision;
    task      conveyor_tasks%ROWTYPE;
    retries   integer;
    new_id    uuid;
    parents   uuid[] := ARRAY(SELECT DISTINCT p FROM unnest(coalesce(enqueue.depends_on, '{}')) AS p ORDER BY p);
    found     integer;
    remaining integer := 0;
    dead_id   uuid;
    dead_st   text;
    dead_step text;
    why       text;
    st        text;
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
    IF cardinality(parents) > 0 AND enqueue.unique_key IS NOT NULL THEN
        RAISE EXCEPTION 'conveyor.enqueue: depends_on and unique_key cannot be combined' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO task FROM conveyor_tasks t WHERE t.name = enqueue.type;
    retries := coalesce(enqueue.max_retries, task.max_retries, 3);
    IF retries < 0 THEN
        RAISE EXCEPTION 'conveyor.enqueue: max_retries must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    start_s := coalesce(extract(epoch FROM enqueue.run_at), now_s + greatest(coalesce(enqueue.delay, 0), 0));
    st := CASE WHEN start_s > now_s THEN 'scheduled' ELSE 'pending' END;
    IF cardinality(parents) > 0 THEN
        -- locked in id order until commit: a parent cannot complete unseen between this read and the edge's insert
        PERFORM 1 FROM conveyor_jobs j WHERE j.id = ANY(parents) ORDER BY j.id FOR UPDATE;
        SELECT count(*), count(*) FILTER (WHERE j.status <> 'completed') INTO found, remaining
        FROM conveyor_jobs j WHERE j.id = ANY(parents);
        IF found < cardinality(parents) THEN
            RAISE EXCEPTION 'conveyor.enqueue: depends_on: no job has the id %',
                (SELECT p FROM unnest(parents) AS p WHERE NOT EXISTS (SELECT 1 FROM conveyor_jobs j WHERE j.id = p)
                 LIMIT 1) USING ERRCODE = '22023';
        END IF;
        SELECT j.id, j.status, j.step INTO dead_id, dead_st, dead_step FROM conveyor_jobs j
        WHERE j.id = ANY(parents) AND j.status IN ('failed', 'cancelled') ORDER BY j.id LIMIT 1;
        IF dead_id IS NOT NULL THEN
            st := 'cancelled';
            why := 'parent ' || coalesce('step ''' || dead_step || ''' (job ' || dead_id || ')', 'job ' || dead_id)
                   || ' ' || dead_st;
        ELSIF remaining > 0 THEN
            st := 'waiting';
        END IF;
    END IF;
    INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                               unique_key, created_at, updated_at, deps_remaining, blocked_by, error, completed_at,
                               status_message)
    VALUES (conveyor.uuid7(), enqueue.type, coalesce(enqueue.queue, task.queue, 'default'), st,
            coalesce(enqueue.priority, task.priority, 0), coalesce(enqueue.args, '{}'), retries,
            coalesce(enqueue.timeout, task.timeout), greatest(start_s, now_s), to_jsonb(coalesce(enqueue.tags, '{}')),
            coalesce(enqueue.metadata, '{}'), enqueue.unique_key, now_s, now_s, remaining, dead_id, why,
            CASE WHEN st = 'cancelled' THEN now_s END, why)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing')
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT id INTO new_id FROM conveyor_jobs
        WHERE unique_key = enqueue.unique_key AND status IN ('scheduled', 'pending', 'processing');
    ELSIF cardinality(parents) > 0 THEN
        INSERT INTO conveyor_job_deps (parent_id, child_id) SELECT p, new_id FROM unnest(parents) AS p;
        UPDATE conveyor_jobs SET has_dependents = true WHERE id = ANY(parents) AND NOT has_dependents;
    END IF;
    RETURN new_id;
END $$;

CREATE OR REPLACE FUNCTION conveyor.cancel(job_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    st    text;
BEGIN
    UPDATE conveyor_jobs SET status = 'cancelled', completed_at = now_s, updated_at = now_s,
                             status_message = 'cancelled'
    WHERE id = cancel.job_id AND status IN ('waiting', 'scheduled', 'pending');
    UPDATE conveyor_jobs SET cancel_requested = true, updated_at = now_s
    WHERE id = cancel.job_id AND status = 'processing' AND NOT cancel_requested;
    SELECT status INTO st FROM conveyor_jobs WHERE id = cancel.job_id;
    RETURN st;
END $$;

CREATE OR REPLACE FUNCTION conveyor.retry(job_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    st    text;
BEGIN
    UPDATE conveyor_jobs
    SET status = CASE WHEN deps_remaining > 0 THEN 'waiting' ELSE 'pending' END, attempts_base = attempts,
        run_at = now_s, result = NULL, completed_at = NULL, cancel_requested = false, progress = 0,
        progress_info = NULL, blocked_by = NULL, updated_at = now_s, status_message = 'retried'
    WHERE id = retry.job_id AND status IN ('failed', 'cancelled');
    SELECT status INTO st FROM conveyor_jobs WHERE id = retry.job_id;
    RETURN st;
END $$;

CREATE OR REPLACE VIEW conveyor.jobs AS
SELECT id, type, queue, status, priority, args, result, error, error_detail, progress, progress_info, attempts,
       max_retries, timeout, to_timestamp(run_at) AS run_at, tags, metadata, unique_key,
       to_timestamp(created_at) AS created_at, to_timestamp(updated_at) AS updated_at,
       to_timestamp(started_at) AS started_at, to_timestamp(completed_at) AS completed_at, worker_id,
       cancel_requested, workflow_id, step,
       ARRAY(SELECT d.parent_id FROM conveyor_job_deps d WHERE d.child_id = conveyor_jobs.id) AS depends_on
FROM conveyor_jobs;
