-- Conveyor schema for PostgreSQL, migration 9: the releases of waiting children and the workflows' counters are
-- written once per statement instead of once per row. A worker cycle completes its batch of jobs in one statement;
-- with the row triggers of migration 7, a batch of 20 fan-out steps decremented the fan-in step's counter 20 times
-- and updated the workflow's row 20 times, each a new version of the same row, under a lock the other workers'
-- cycles wait for. Now each child's counter drops by the number of its parents the statement completed, and each
-- workflow's counters move by the statement's sum, in one update of each row. Same outcomes, same history rows.
-- One statement trigger does both, children first, then the workflow's row: the order in which the rows of a
-- completion are locked, the same as an extend of the workflow (parents, waiting steps, workflow), so the two never
-- deadlock. For a statement that touches no job with children and no step (an ordinary claim or completion) it is
-- one scan of the statement's rows.

DROP TRIGGER conveyor_jobs_release ON conveyor_jobs;
DROP TRIGGER conveyor_jobs_workflow_step ON conveyor_jobs;
DROP FUNCTION conveyor_jobs_release();
DROP FUNCTION conveyor_jobs_workflow_step();

CREATE FUNCTION conveyor_jobs_settled() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev     text;
    released integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE has_dependents OR workflow_id IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    -- The children of the parents that completed: one parent fewer to wait for per parent; a waiting child with none
    -- left is ready (a child is released once: its counter reaches 0 once). The release writes its own history, so
    -- the generic update trigger is told to skip it, then the setting is put back as it was.
    IF EXISTS (SELECT 1 FROM new_rows WHERE has_dependents AND status = 'completed') THEN
        prev := coalesce(current_setting('conveyor.history', true), '');
        PERFORM set_config('conveyor.history', 'written', true);
        WITH parents AS (
            SELECT n.id, n.updated_at FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.has_dependents AND o.status <> n.status AND n.status = 'completed'
        ), children AS (
            SELECT d.child_id, count(*)::integer AS k, max(p.updated_at) AS at
            FROM parents p JOIN conveyor_job_deps d ON d.parent_id = p.id
            GROUP BY d.child_id
        ), moved AS (
            UPDATE conveyor_jobs c
            SET deps_remaining = c.deps_remaining - ch.k,
                status = CASE WHEN c.status <> 'waiting' OR c.deps_remaining > ch.k THEN c.status
                              WHEN c.run_at > ch.at THEN 'scheduled' ELSE 'pending' END,
                run_at = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= ch.k
                              THEN greatest(c.run_at, ch.at) ELSE c.run_at END,
                updated_at = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= ch.k
                                  THEN ch.at ELSE c.updated_at END,
                status_message = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= ch.k
                                      THEN 'parents completed' ELSE c.status_message END
            FROM children ch
            WHERE c.id = ch.child_id
            RETURNING c.id, c.status, ch.at
        )
        INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
        SELECT id, at, 'waiting', status, 'parents completed' FROM moved
        WHERE status IN ('pending', 'scheduled');
        GET DIAGNOSTICS released = ROW_COUNT;
        PERFORM set_config('conveyor.history', prev, true);
    END IF;
    -- The workflows' counters: steps that moved into a terminal state (+1) or out of one (a retry: -1).
    WITH moved AS (
        SELECT n.workflow_id,
               sum(CASE WHEN n.status IN ('completed', 'failed', 'cancelled') THEN 1 ELSE -1 END) AS ended,
               sum((n.status = 'completed')::integer - (o.status = 'completed')::integer) AS done,
               max(n.updated_at) AS at
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.workflow_id IS NOT NULL AND o.status <> n.status
          AND (o.status IN ('completed', 'failed', 'cancelled')) <> (n.status IN ('completed', 'failed', 'cancelled'))
        GROUP BY n.workflow_id
    )
    UPDATE conveyor_workflows w
    SET steps_done = w.steps_done + m.done, steps_ended = w.steps_ended + m.ended, updated_at = m.at,
        status = CASE WHEN w.steps_ended + m.ended < w.steps_total THEN 'running'
                      WHEN w.steps_done + m.done = w.steps_total THEN 'completed'
                      WHEN w.cancelled THEN 'cancelled'
                      ELSE 'failed' END,
        completed_at = CASE WHEN w.steps_ended + m.ended < w.steps_total THEN NULL ELSE m.at END
    FROM moved m
    WHERE w.id = m.workflow_id;
    IF released > 0 THEN
        PERFORM pg_notify('conveyor_ready', '');
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_settled AFTER UPDATE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_settled();
