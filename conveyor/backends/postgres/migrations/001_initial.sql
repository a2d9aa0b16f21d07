-- Conveyor schema for PostgreSQL, migration 1: the tables, their indexes and the triggers that record history.
-- Times are UTC epoch seconds (double precision), as in the SQLite schema; the read views of migration 2 show them as
-- timestamptz. Tables live in the connection's current schema (normally `public`) with a `conveyor_` prefix.

CREATE TABLE conveyor_jobs (
    id               uuid PRIMARY KEY,            -- UUIDv7: time-ordered, so it also orders by enqueue time
    type             text NOT NULL,
    queue            text NOT NULL DEFAULT 'default',
    status           text NOT NULL CHECK (status IN
                         ('scheduled', 'pending', 'processing', 'completed', 'failed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0,
    args             jsonb NOT NULL DEFAULT '{}',
    result           jsonb,
    error            text,
    error_detail     text,
    progress         integer NOT NULL DEFAULT 0,
    progress_info    jsonb,
    attempts         integer NOT NULL DEFAULT 0,
    attempts_base    integer NOT NULL DEFAULT 0,  -- attempts that do not count against max_retries
    max_retries      integer NOT NULL,
    timeout          double precision,
    run_at           double precision NOT NULL,
    tags             jsonb NOT NULL DEFAULT '[]',
    metadata         jsonb NOT NULL DEFAULT '{}',
    unique_key       text,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    started_at       double precision,
    completed_at     double precision,
    worker_id        text,
    lease_expires_at double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    status_message   text                         -- why the last transition happened, copied into its event
);

-- A queue table is updated several times per job and most rows die young. Defaults (vacuum at 20 % dead rows, a
-- cost limit meant for big, cold tables) let dead tuples pile up in the ready index and slow every claim down, so:
-- vacuum after 1 % of the table (or 1,000 rows) changed, without sleeping between pages; analyze as often, so the
-- planner keeps using the partial indexes; leave 30 % free space per page so that updates which change no indexed
-- column (progress, lease renewals) stay HOT (same page, no index writes).
ALTER TABLE conveyor_jobs SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- Claims read this partial index in order and stop after `limit` rows: it only holds ready jobs, so it stays small.
CREATE INDEX conveyor_jobs_ready ON conveyor_jobs (priority DESC, run_at, id) WHERE status = 'pending';
CREATE INDEX conveyor_jobs_due ON conveyor_jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX conveyor_jobs_running ON conveyor_jobs (worker_id) WHERE status = 'processing';
CREATE INDEX conveyor_jobs_finished ON conveyor_jobs (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE UNIQUE INDEX conveyor_jobs_unique_key ON conveyor_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing');

-- Job history and change outbox in one table, as on SQLite. A row with a `to_status` is a transition (the job's
-- history); a row without one records another change (progress, a cancel request, a deletion) for live streams.
-- `xid` is the writing transaction: readers of the outbox only take rows of transactions older than every running one,
-- so a row with a smaller id that commits later is not skipped.
CREATE TABLE conveyor_job_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid NOT NULL,
    at          double precision NOT NULL,
    from_status text,
    to_status   text,
    worker_id   text,
    message     text,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id()
);
ALTER TABLE conveyor_job_events SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX conveyor_job_events_job ON conveyor_job_events (job_id);
CREATE INDEX conveyor_job_events_changes ON conveyor_job_events (at) WHERE to_status IS NULL;

-- Every change is recorded by the database itself, so no code path (nor a service using plain SQL) can forget one.
-- Statement-level triggers with transition tables: one INSERT of events per statement, however many jobs it touched.
-- Channels: `conveyor_ready` wakes idle workers (a job became pending or scheduled, a queue changed);
-- `conveyor_changes` wakes live event streams (any change).
CREATE FUNCTION conveyor_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, message)
    SELECT id, created_at, NULL, status, status_message FROM new_rows;
    IF FOUND THEN
        PERFORM pg_notify('conveyor_ready', '');
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_inserted AFTER INSERT ON conveyor_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_inserted();

CREATE FUNCTION conveyor_jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ready boolean;
BEGIN
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
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_updated AFTER UPDATE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_updated();

CREATE FUNCTION conveyor_jobs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conveyor_job_events e USING old_rows o WHERE e.job_id = o.id;
    INSERT INTO conveyor_job_events (job_id, at, message)
    SELECT id, extract(epoch FROM clock_timestamp()), 'deleted' FROM old_rows;
    IF FOUND THEN
        PERFORM pg_notify('conveyor_changes', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_jobs_deleted AFTER DELETE ON conveyor_jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION conveyor_jobs_deleted();

CREATE TABLE conveyor_queues (
    name          text PRIMARY KEY,
    paused        boolean NOT NULL DEFAULT false,
    concurrency   integer,
    rate_limit    double precision,
    window_start  double precision NOT NULL DEFAULT 0,   -- rate limit: start of the current window
    window_count  integer NOT NULL DEFAULT 0,
    updated_at    double precision NOT NULL
);

CREATE FUNCTION conveyor_queues_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('conveyor_ready', '');
    RETURN NULL;
END $$;

CREATE TRIGGER conveyor_queues_changed AFTER INSERT OR UPDATE OF paused, concurrency, rate_limit ON conveyor_queues
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_queues_changed();

CREATE TABLE conveyor_workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       jsonb,
    slots        integer NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    expires_at   double precision NOT NULL
);

-- Leader election for maintenance (rescuer, pruner): one row per role, held by one backend until it expires. A row
-- with an expiry, not a session advisory lock, so a frozen (SIGSTOPped) leader loses the role like a dead one.
CREATE TABLE conveyor_leaders (
    role        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  double precision NOT NULL
);
