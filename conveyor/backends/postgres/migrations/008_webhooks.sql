-- Conveyor schema for PostgreSQL, migration 8: webhooks (SPEC section 7), as on SQLite. Subscriptions, and their
-- deliveries as an outbox: the database itself writes a delivery row, in the transaction of the job change that causes
-- it (triggers below), so a crash between the change and the send loses nothing; the workers send them.
ALTER TABLE conveyor_jobs ADD COLUMN webhook_url text;  -- the enqueue option: this job's terminal event goes there

CREATE TABLE conveyor_webhooks (
    id            uuid PRIMARY KEY,
    url           text NOT NULL,
    events        text[] NOT NULL,
    filter_type   text,                     -- NULL: any
    filter_queue  text,
    filter_tag    text,
    secret        text NOT NULL,            -- whsec_...: signs every delivery (Standard Webhooks)
    paused        boolean NOT NULL DEFAULT false,
    paused_reason text,
    failing_since double precision,         -- the first failure since the last success
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL
);

-- One row per event and target: a subscription (`webhook_id`) or a job's own `url`. `payload` is the job's row as
-- JSON at the time of the event; `next_attempt_at` is also the lease of a delivery being sent.
CREATE TABLE conveyor_webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      uuid REFERENCES conveyor_webhooks (id) ON DELETE CASCADE,
    url             text,
    event           text NOT NULL,
    job_id          uuid,
    payload         jsonb NOT NULL,
    attempt         integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    status_code     integer,
    error           text,
    history         jsonb,              -- every attempt, once one failed: [{at, attempt, status_code, error}]
    created_at      double precision NOT NULL,
    attempted_at    double precision,
    delivered_at    double precision
);
CREATE INDEX conveyor_webhook_deliveries_due ON conveyor_webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX conveyor_webhook_deliveries_job ON conveyor_webhook_deliveries (job_id, id) WHERE status = 'pending';
CREATE INDEX conveyor_webhook_deliveries_webhook ON conveyor_webhook_deliveries (webhook_id, id);
CREATE INDEX conveyor_webhook_deliveries_finished ON conveyor_webhook_deliveries (created_at)
    WHERE status <> 'pending';

-- Subscriptions: every history row (a transition, or a progress change) that an active subscription wants, whoever
-- wrote it (the update trigger, conveyor_work, COPY's insert trigger). One statement-level trigger: one guard query
-- per statement, a lookup in a (normally empty) table, when nothing subscribes. Event names: the creation, a start,
-- an end, a return to the queue (a failed attempt with retries left, an expired lease, a release, a manual retry:
-- `job.retrying`), progress. workflow.* events: a workflow's own trigger would insert its rows here the same way
-- (payload: the workflow JSON; job_id NULL).
CREATE FUNCTION conveyor_webhooks_outbox() RETURNS trigger LANGUAGE plpgsql
-- The planner's defaults, whoever fired the trigger: conveyor_work turns hash joins and sorts off for its own
-- statements, which would make this join scan the whole jobs table for every event.
SET enable_sort = on
SET enable_hashjoin = on
SET enable_mergejoin = on
SET enable_bitmapscan = on
SET plan_cache_mode = auto
AS $$
BEGIN
    PERFORM 1 FROM conveyor_webhooks WHERE NOT paused LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO conveyor_webhook_deliveries (webhook_id, event, job_id, payload, next_attempt_at, created_at)
    SELECT w.id, e.event, j.id, to_jsonb(j) - 'seq' - 'attempts_base' - 'lease_expires_at' - 'status_message'
               - 'webhook_url',
           e.at, e.at
    FROM (SELECT n.id AS event_id, n.job_id, n.at,
                 CASE
                     WHEN n.to_status IS NULL THEN 'job.progress'
                     WHEN n.from_status IS NULL THEN 'job.created'
                     WHEN n.to_status = 'processing' THEN 'job.started'
                     WHEN n.to_status = 'completed' THEN 'job.completed'
                     WHEN n.to_status = 'failed' THEN 'job.failed'
                     WHEN n.to_status = 'cancelled' THEN 'job.cancelled'
                     WHEN n.from_status IN ('processing', 'failed', 'cancelled') THEN 'job.retrying'
                 END AS event
          FROM new_events n
          WHERE n.to_status IS NOT NULL OR n.message = 'progress') e
    JOIN conveyor_jobs j ON j.id = e.job_id
    JOIN conveyor_webhooks w ON NOT w.paused AND e.event = ANY (w.events)
         AND (w.filter_type IS NULL OR w.filter_type = j.type)
         AND (w.filter_queue IS NULL OR w.filter_queue = j.queue)
         AND (w.filter_tag IS NULL OR j.tags ? w.filter_tag)
    WHERE e.event IS NOT NULL
    ORDER BY e.event_id, w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER conveyor_webhooks_outbox AFTER INSERT ON conveyor_job_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION conveyor_webhooks_outbox();

-- A job's own webhook_url: its terminal event (completed, failed, cancelled). A row trigger whose WHEN is all that
-- other jobs pay (no function call).
CREATE FUNCTION conveyor_jobs_webhook_url() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conveyor_webhook_deliveries (url, event, job_id, payload, next_attempt_at, created_at)
    VALUES (NEW.webhook_url, 'job.' || NEW.status, NEW.id,
            to_jsonb(NEW) - 'seq' - 'attempts_base' - 'lease_expires_at' - 'status_message' - 'webhook_url',
            NEW.updated_at, NEW.updated_at);
    RETURN NULL;
END $$;
CREATE TRIGGER conveyor_jobs_webhook_url AFTER UPDATE OF status ON conveyor_jobs
    FOR EACH ROW WHEN (NEW.webhook_url IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION conveyor_jobs_webhook_url();
