-- Conveyor schema for PostgreSQL, migration 12: a worker's cycle (conveyor_work) promotes due scheduled jobs only when
-- there is one. The promotion is an UPDATE and an INSERT into the history; each fires its statement triggers (history,
-- fair-limit counts, dependencies, the webhook outbox) even when it changes no row, and most cycles have nothing due:
-- an index probe of conveyor_jobs_due first saves them. conveyor_work (003, 005, 011) is rewritten from its stored
-- definition at the promotion's two ends; the check fails the migration loudly if they are not there.
DO $$
DECLARE
    old_def text;
    new_def text;
BEGIN
    SELECT pg_get_functiondef(p.oid) INTO old_def FROM pg_proc p WHERE p.proname = 'conveyor_work';
    new_def := replace(old_def, E'        WITH promoted AS (\n',
        E'        IF EXISTS (SELECT 1 FROM conveyor_jobs WHERE status = ''scheduled'' AND run_at <= p_now) THEN\n'
        || E'        WITH promoted AS (\n');
    new_def := replace(new_def, E'ready := true;  -- more may be pending now than this worker takes\n        END IF;\n',
        E'ready := true;  -- more may be pending now than this worker takes\n        END IF;\n        END IF;\n');
    IF length(new_def) - length(old_def) <> length(E'        IF EXISTS (SELECT 1 FROM conveyor_jobs WHERE status = ''scheduled'' AND run_at <= p_now) THEN\n')
                                            + length(E'        END IF;\n') THEN
        RAISE EXCEPTION 'conveyor_work has no promotion of due jobs to guard';
    END IF;
    EXECUTE new_def;
END $$;
