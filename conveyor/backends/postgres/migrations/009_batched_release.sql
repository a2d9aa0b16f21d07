-- Conveyor schema for PostgreSQL, migration 9: the worker cycle (`conveyor_work`) releases children and counts its
-- workflows' steps once per cycle, at its end, rather than once per ended job in the middle of the cycle.
--
-- Why: a fan-in step (10,000 parents, one child) and its workflow are two hot rows. With the row triggers of
-- migration 7, every completion updated both, in the completion statement of the cycle: the rows stayed locked
-- through the rest of the cycle (the claim) until its commit, so the cycles of two worker processes waited for each
-- other, and each cycle wrote one version of each row per completed job. Now, inside conveyor_work
-- (`conveyor.batched` is on), the two row triggers only note the job; at the end of the cycle one statement releases
-- the children (each child's counter goes down by its parents completed in this cycle) and one updates each
-- workflow's counters, the rows locked in id order (parents, then children, then workflows: the order of every other
-- writer), held only until the commit that follows. Every other writer (cancel, retry, the SQL API, the shared
-- backend's paths) keeps the row triggers' immediate effect.

CREATE OR REPLACE FUNCTION conveyor_jobs_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev     text := coalesce(current_setting('conveyor.history', true), '');
    released integer;
BEGIN
    IF current_setting('conveyor.batched', true) = 'on' THEN  -- conveyor_work releases at the end of its cycle
        PERFORM set_config('conveyor.batched_parents',
                           coalesce(current_setting('conveyor.batched_parents', true), '') || NEW.id || ',', true);
        RETURN NULL;
    END IF;
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

CREATE OR REPLACE FUNCTION conveyor_jobs_workflow_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended integer := CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN 1 ELSE -1 END;
    done  integer := (NEW.status = 'completed')::integer - (OLD.status = 'completed')::integer;
BEGIN
    IF current_setting('conveyor.batched', true) = 'on' THEN  -- conveyor_work counts at the end of its cycle
        PERFORM set_config('conveyor.batched_steps',
                           coalesce(current_setting('conveyor.batched_steps', true), '')
                           || NEW.workflow_id || ':' || done || ':' || ended || ',', true);
        RETURN NULL;
    END IF;
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

-- What a cycle noted, applied: returns whether a child became ready. `p_now` is the cycle's time (every job it
-- ended has it as updated_at). The children, then the workflows, are locked in id order before they are written.
CREATE FUNCTION conveyor_work_batched(p_now double precision) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    parents  uuid[] := string_to_array(rtrim(coalesce(current_setting('conveyor.batched_parents', true), ''), ','),
                                       ',')::uuid[];
    steps    text[] := string_to_array(rtrim(coalesce(current_setting('conveyor.batched_steps', true), ''), ','),
                                       ',');
    kids     uuid[];
    counts   integer[];
    flows    uuid[];
    done     integer[];
    ended    integer[];
    released integer := 0;
BEGIN
    PERFORM set_config('conveyor.batched', '', true);
    PERFORM set_config('conveyor.batched_parents', '', true);
    PERFORM set_config('conveyor.batched_steps', '', true);
    IF cardinality(parents) > 0 THEN
        SELECT array_agg(child_id ORDER BY child_id), array_agg(n ORDER BY child_id) INTO kids, counts
        FROM (SELECT d.child_id, count(*)::integer AS n FROM conveyor_job_deps d
              WHERE d.parent_id = ANY(parents) GROUP BY d.child_id) AS per_child;
    END IF;
    IF kids IS NOT NULL THEN
        PERFORM 1 FROM conveyor_jobs WHERE id = ANY(kids) ORDER BY id FOR UPDATE;
        WITH k AS (
            SELECT * FROM unnest(kids, counts) AS k(child_id, n)
        ), moved AS (
            UPDATE conveyor_jobs c
            SET deps_remaining = c.deps_remaining - k.n,
                status = CASE WHEN c.status <> 'waiting' OR c.deps_remaining > k.n THEN c.status
                              WHEN c.run_at > p_now THEN 'scheduled' ELSE 'pending' END,
                run_at = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= k.n
                              THEN greatest(c.run_at, p_now) ELSE c.run_at END,
                updated_at = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= k.n
                                  THEN p_now ELSE c.updated_at END,
                status_message = CASE WHEN c.status = 'waiting' AND c.deps_remaining <= k.n
                                      THEN 'parents completed' ELSE c.status_message END
            FROM k
            WHERE c.id = ANY(kids) AND c.id = k.child_id
            RETURNING c.id, c.status
        )
        INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
        SELECT id, p_now, 'waiting', status, 'parents completed' FROM moved
        WHERE status IN ('pending', 'scheduled');
        GET DIAGNOSTICS released = ROW_COUNT;
    END IF;
    IF cardinality(steps) > 0 THEN
        SELECT array_agg(workflow_id ORDER BY workflow_id), array_agg(d ORDER BY workflow_id),
               array_agg(e ORDER BY workflow_id)
        INTO flows, done, ended
        FROM (SELECT split_part(n.item, ':', 1)::uuid AS workflow_id,
                     sum(split_part(n.item, ':', 2)::integer)::integer AS d,
                     sum(split_part(n.item, ':', 3)::integer)::integer AS e
              FROM unnest(steps) AS n(item) GROUP BY 1) AS per_workflow;
        PERFORM 1 FROM conveyor_workflows WHERE id = ANY(flows) ORDER BY id FOR UPDATE;
        UPDATE conveyor_workflows w
        SET steps_done = w.steps_done + s.d, steps_ended = w.steps_ended + s.e, updated_at = p_now,
            status = CASE WHEN w.steps_ended + s.e < w.steps_total THEN 'running'
                          WHEN w.steps_done + s.d = w.steps_total THEN 'completed'
                          WHEN w.cancelled THEN 'cancelled'
                          ELSE 'failed' END,
            completed_at = CASE WHEN w.steps_ended + s.e < w.steps_total THEN NULL ELSE p_now END
        FROM unnest(flows, done, ended) AS s(workflow_id, d, e)
        WHERE w.id = ANY(flows) AND w.id = s.workflow_id;
    END IF;
    RETURN released > 0;
END $$;

-- conveyor_work turns the batching on at its start and applies it before it returns. Its definition (migrations 3
-- and 5) changes in those two places only, so it is rewritten from the stored definition rather than restated; a
-- definition that no longer has either place fails the migration loudly.
DO $$
DECLARE
    old_def text;
    new_def text;
BEGIN
    SELECT pg_get_functiondef(p.oid) INTO old_def FROM pg_proc p WHERE p.proname = 'conveyor_work';
    new_def := replace(old_def,
        E'PERFORM set_config(''conveyor.history'', ''written'', true);  -- reset below, before returning\n',
        E'PERFORM set_config(''conveyor.history'', ''written'', true);  -- reset below, before returning\n'
        '    PERFORM set_config(''conveyor.batched'', ''on'', true);  -- applied below: conveyor_work_batched\n');
    IF new_def = old_def THEN
        RAISE EXCEPTION 'conveyor_work has no place to turn the batching on';
    END IF;
    old_def := new_def;
    new_def := replace(old_def,
        E'    PERFORM set_config(''conveyor.history'', '''', true);\n    IF changed THEN',
        E'    IF conveyor_work_batched(p_now) THEN  -- children released: wake the idle workers\n'
        '        changed := true;\n'
        '        ready := true;\n'
        '    END IF;\n'
        '    PERFORM set_config(''conveyor.history'', '''', true);\n    IF changed THEN');
    IF new_def = old_def THEN
        RAISE EXCEPTION 'conveyor_work has no place to apply the batching';
    END IF;
    EXECUTE new_def;
END $$;
