-- Conveyor schema for PostgreSQL, migration 11: a claimed job's started_at is never before its run_at. The claiming
-- worker's `now` is read at its cycle's start, before the statement that claims; a child released by another
-- process's completion (its run_at is that completion's time) could get a started_at a fraction of a millisecond
-- before its parent's completed_at, although it was claimed after that completion committed. `greatest(now, run_at)`
-- keeps the recorded times in the order things happened. conveyor_work (003, 005) is rewritten from its stored
-- definition in that one assignment; the check fails the migration loudly if the assignment is not there.
DO $$
DECLARE
    old_def text;
    new_def text;
BEGIN
    SELECT pg_get_functiondef(p.oid) INTO old_def FROM pg_proc p WHERE p.proname = 'conveyor_work';
    new_def := replace(old_def, 'worker_id = p_worker, started_at = p_now,',
                       'worker_id = p_worker, started_at = greatest(p_now, j.run_at),');
    IF new_def = old_def THEN
        RAISE EXCEPTION 'conveyor_work has no started_at assignment to change';
    END IF;
    EXECUTE new_def;
END $$;
