-- Conveyor schema for PostgreSQL, migration 5: job dependencies and workflows (SPEC section 7).
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
