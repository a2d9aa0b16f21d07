-- Conveyor schema for PostgreSQL, version 5: fair limits per key. A job's `group_key` puts it in a group of its
-- queue; the queue's `group_concurrency` and `group_rate_limit` apply to each of its keys, and `conveyor_groups`
-- holds each key's turn (`served_at`: claims go round-robin, least recently served key first), its overrides, its
-- rate window, and how many of its jobs are ready (kept by the statement triggers below, one row per key and
-- statement, so that a claim finds the keys with ready jobs through an index instead of a scan of every key). A
-- queue that ever had a key is `grouped`: its claims take the fair (locking) path for its keyed jobs. The ready index
-- holds only jobs without a key: conveyor_work's one-statement claim reads it, and a backlog of keyed jobs never lies
-- in its way.
ALTER TABLE conveyor_jobs ADD COLUMN group_key text;
ALTER TABLE conveyor_queues ADD COLUMN group_concurrency integer, ADD COLUMN group_rate_limit double precision,
    ADD COLUMN grouped boolean NOT NULL DEFAULT false;

CREATE TABLE conveyor_groups (
    queue        text NOT NULL,
    group_key    text NOT NULL,
    ready        integer NOT NULL DEFAULT 0,            -- jobs of the key in `pending`
    served_at    double precision NOT NULL DEFAULT 0,   -- when a claim last started one of its jobs
    concurrency  integer,                               -- overrides of the queue's group_concurrency / group_rate_limit
    rate_limit   double precision,
    window_start double precision NOT NULL DEFAULT 0,
    window_count integer NOT NULL DEFAULT 0,
    updated_at   double precision NOT NULL,
    PRIMARY KEY (queue, group_key)
);
CREATE INDEX conveyor_groups_turns ON conveyor_groups (queue, served_at, group_key) WHERE ready > 0;

DROP INDEX conveyor_jobs_ready;
CREATE INDEX conveyor_jobs_ready ON conveyor_jobs (priority DESC, run_at, id) WHERE status = 'pending' AND group_key IS NULL;
CREATE INDEX conveyor_jobs_group_ready ON conveyor_jobs (queue, group_key, priority DESC, run_at, id)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_group_top ON conveyor_jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_group_running ON conveyor_jobs (queue, group_key)
    WHERE status = 'processing' AND group_key IS NOT NULL;

-- Each key's ready count moves by one statement per key (in key order, so that concurrent writers lock the rows in
-- the same order); a statement without grouped rows pays one pass over its transition table.
-- (enable_sort: the claim's transaction turns sorts off, and this small sort must not make the planner despair)
CREATE FUNCTION conveyor_groups_count(deltas jsonb, at double precision) RETURNS void LANGUAGE sql
SET enable_sort = on AS $$
    INSERT INTO conveyor_groups (queue, group_key, ready, updated_at)
    SELECT d->>0, d->>1, (d->>2)::int, at FROM jsonb_array_elements(deltas) d ORDER BY d->>0, d->>1
    ON CONFLICT (queue, group_key) DO UPDATE SET ready = conveyor_groups.ready + EXCLUDED.ready;
$$;

CREATE FUNCTION conveyor_jobs_group_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
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
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_group_created AFTER INSERT ON conveyor_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_group_created();

CREATE FUNCTION conveyor_jobs_group_transition() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE group_key IS NOT NULL) THEN
        RETURN NULL;
    END IF;
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
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_group_transition AFTER UPDATE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION conveyor_jobs_group_transition();

CREATE FUNCTION conveyor_jobs_group_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_array(queue, group_key, -n)) INTO deltas
    FROM (SELECT queue, group_key, count(*) AS n FROM old_rows
          WHERE group_key IS NOT NULL AND status = 'pending' GROUP BY queue, group_key) k;
    IF deltas IS NOT NULL THEN
        PERFORM conveyor_groups_count(deltas, extract(epoch FROM now()));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_group_deleted AFTER DELETE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_group_deleted();

-- A queue's `grouped` flag wakes the workers too (their claims change path).
DROP TRIGGER conveyor_queues_changed ON conveyor_queues;
CREATE TRIGGER conveyor_queues_changed
    AFTER INSERT OR UPDATE OF paused, concurrency, rate_limit, grouped ON conveyor_queues
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_queues_changed();

-- conveyor_work's claim takes jobs without a key only (the keyed ones are the fair claim's). Its definition (003)
-- changes in that one condition, so it is rewritten from the stored definition rather than restated here; the check
-- makes a definition that no longer has the condition's place fail the migration loudly.
DO $$
DECLARE
    old_def text;
    new_def text;
BEGIN
    SELECT pg_get_functiondef(p.oid) INTO old_def FROM pg_proc p WHERE p.proname = 'conveyor_work';
    new_def := replace(old_def, E'AND (p_types IS NULL OR type = ANY(p_types))\n              AND queue NOT IN',
                       E'AND (p_types IS NULL OR type = ANY(p_types))\n              AND group_key IS NULL\n'
                       '              AND queue NOT IN');
    IF new_def = old_def THEN
        RAISE EXCEPTION 'conveyor_work has no claim condition to extend';
    END IF;
    EXECUTE new_def;
END $$;
