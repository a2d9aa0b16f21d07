-- Conveyor schema for PostgreSQL, migration 13: one trigger function per statement kind instead of two or three. Each
-- statement trigger is a PL/pgSQL call of its own, fired by every INSERT or UPDATE of conveyor_jobs even when it has
-- nothing to do: an enqueue fired two and a row trigger's check per job, a worker cycle's completion and claim three
-- each. The fair-limit counts of new jobs (conveyor_jobs_group_created, migration 5) and the deliveries to the
-- webhook_url of jobs stored already ended (the row trigger conveyor_jobs_webhook_url_created, migration 10, which
-- fired before the statement triggers and still comes first) now run in conveyor_jobs_inserted, and the fair-limit
-- counts and the release of dependents (conveyor_jobs_group_transition, 5; conveyor_jobs_settled, 9) in
-- conveyor_jobs_updated, in the order the separate triggers fired in (by name): counts, dependents, then the history.
-- Their bodies are unchanged; each part is skipped where its own trigger returned early.

CREATE OR REPLACE FUNCTION conveyor_jobs_inserted() RETURNS trigger AS $$
DECLARE
    deltas jsonb;
BEGIN
    -- A job stored ended (a dependent of a failed parent) with its own webhook_url: its terminal event goes there.
    INSERT INTO conveyor_webhook_deliveries (url, event, job_id, payload, next_attempt_at, created_at)
    SELECT n.webhook_url, 'job.' || n.status, n.id,
           to_jsonb(n) - 'seq' - 'attempts_base' - 'lease_expires_at' - 'status_message'
               || jsonb_build_object('depends_on', ARRAY(SELECT d.parent_id::text FROM conveyor_job_deps d
                                                         WHERE d.child_id = n.id)),
           n.updated_at, n.updated_at
    FROM new_rows n
    WHERE n.webhook_url IS NOT NULL AND n.status IN ('completed', 'failed', 'cancelled')
    ORDER BY n.id;
    -- The fair-limit counts of the keys that got ready jobs, and their queues marked as keyed.
    SELECT jsonb_agg(jsonb_build_array(queue, group_key, n)) INTO deltas
    FROM (SELECT queue, group_key, count(*) FILTER (WHERE status = 'pending') AS n FROM new_rows
          WHERE group_key IS NOT NULL GROUP BY queue, group_key) k;
    IF deltas IS NOT NULL THEN
        PERFORM conveyor_groups_count(deltas, extract(epoch FROM now()));
        INSERT INTO conveyor_queues (name, updated_at, grouped)
        SELECT DISTINCT d->>0, extract(epoch FROM now()), true FROM jsonb_array_elements(deltas) d
        WHERE NOT EXISTS (SELECT 1 FROM conveyor_queues q WHERE q.name = d->>0 AND q.grouped)
        ORDER BY 1
        ON CONFLICT (name) DO UPDATE SET grouped = true;
    END IF;
    -- The history: each job's creation.
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
    SELECT id, created_at, NULL, status, status_message FROM new_rows;
    IF FOUND THEN
        PERFORM pg_notify('conveyor_ready', '');
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP TRIGGER conveyor_jobs_group_created ON conveyor_jobs;
DROP FUNCTION conveyor_jobs_group_created();
DROP TRIGGER conveyor_jobs_webhook_url_created ON conveyor_jobs;  -- its function stays: updates that end a job use it

CREATE OR REPLACE FUNCTION conveyor_jobs_updated() RETURNS trigger AS $$
DECLARE
    deltas   jsonb;
    prev     text;
    released integer := 0;
    ready    boolean;
BEGIN
    -- 1. The fair-limit counts: the keys' jobs that became pending (+1) or stopped being pending (-1).
    IF EXISTS (SELECT 1 FROM new_rows WHERE group_key IS NOT NULL) THEN
        SELECT jsonb_agg(jsonb_build_array(queue, group_key, n)) INTO deltas
        FROM (SELECT queue, group_key, sum(d)::int AS n
              FROM (SELECT queue, group_key, 1 AS d FROM new_rows WHERE group_key IS NOT NULL AND status = 'pending'
                    UNION ALL
                    SELECT queue, group_key, -1 FROM old_rows WHERE group_key IS NOT NULL AND status = 'pending') c
              GROUP BY queue, group_key) k
        WHERE n <> 0;  -- (a job's key and queue never change: the pending rows before and after are enough)
        IF deltas IS NOT NULL THEN
            PERFORM conveyor_groups_count(deltas, extract(epoch FROM now()));
        END IF;
    END IF;

    -- 2. Dependencies and workflows (was conveyor_jobs_settled, migration 9).
    IF EXISTS (SELECT 1 FROM new_rows WHERE has_dependents OR workflow_id IS NOT NULL) THEN
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
    END IF;

    -- 3. The history, unless the statement wrote its own (conveyor_work, the release of dependents above).
    IF current_setting('conveyor.history', true) IS DISTINCT FROM 'written' THEN
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
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP TRIGGER conveyor_jobs_group_transition ON conveyor_jobs;
DROP FUNCTION conveyor_jobs_group_transition();
DROP TRIGGER conveyor_jobs_settled ON conveyor_jobs;
DROP FUNCTION conveyor_jobs_settled();
