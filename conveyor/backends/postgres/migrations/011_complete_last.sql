-- Conveyor schema for PostgreSQL, migration 11: the worker cycle (`conveyor_work`) writes its completions last, after
-- its claim, just before it commits.
--
-- Why: a completion of a fan-out step updates two hot rows, the fan-in step's counter and the workflow's counters
-- (once per statement since migration 9), and holds their locks until the cycle commits. Written before the claim,
-- they stayed locked through the claim too, and the other worker processes' cycles queued behind them (on the
-- 10,000-step fan-out, a fifth to a quarter of the cycles' time was spent waiting on Lock:transactionid). Written
-- last, they are held only from the end of that statement to the commit. The outcomes that make jobs ready again
-- (failed with a retry, released) still come before the claim, which sees them; a child that a completion releases
-- is claimed by the next cycle (the cycle's `conveyor_ready` notification wakes the idle workers).
--
-- conveyor_work's definition (migrations 3 and 5) changes in that order only, so it is rewritten from the stored
-- definition rather than restated; a definition that no longer has the block or the place fails the migration.
DO $$
DECLARE
    def    text;
    start  integer;
    finish integer;
    block  text;
    anchor text := E'    PERFORM set_config(''conveyor.history'', '''', true);\n    IF changed THEN';
BEGIN
    SELECT pg_get_functiondef(p.oid) INTO def FROM pg_proc p WHERE p.proname = 'conveyor_work';
    start := position(E'    IF p_completed IS NOT NULL THEN\n' IN def);
    finish := position(E'\n    IF p_failed IS NOT NULL THEN\n' IN def);
    IF start = 0 OR finish < start OR position(anchor IN def) < finish THEN
        RAISE EXCEPTION 'conveyor_work has no completion block before its failures, or no end to move it to';
    END IF;
    block := substr(def, start, finish - start);  -- up to and with the block's last line break
    def := overlay(def PLACING '' FROM start FOR finish - start);
    def := replace(def, anchor, E'    -- the completions last: their children and workflows stay locked only until the commit (migration 11)\n'
                               || block || E'\n' || anchor);
    EXECUTE def;
END $$;
