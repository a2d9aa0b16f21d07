-- Conveyor schema for SQLite, version 6: webhooks (SPEC section 7). Subscriptions, and their deliveries as an outbox:
-- the database itself writes a delivery row, in the transaction of the job change that causes it (triggers on the
-- job history below), so a crash between the change and the send loses nothing; the workers send them.
ALTER TABLE conveyor_jobs ADD COLUMN webhook_url TEXT;  -- the enqueue option: this job's terminal event goes there

CREATE TABLE conveyor_webhooks (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,            -- a JSON array of event names (job.completed, ...)
    filter_type   TEXT,                     -- NULL: any
    filter_queue  TEXT,
    filter_tag    TEXT,
    secret        TEXT NOT NULL,            -- whsec_...: signs every delivery (Standard Webhooks)
    paused        INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT,
    failing_since REAL,                     -- the first failure since the last success
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);

-- One row per event and target: a subscription (`webhook_id`) or a job's own `url`. `payload` is the job's row as
-- JSON at the time of the event; `next_attempt_at` is also the lease of a delivery being sent.
CREATE TABLE conveyor_webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      TEXT REFERENCES conveyor_webhooks (id) ON DELETE CASCADE,
    url             TEXT,
    event           TEXT NOT NULL,
    job_id          TEXT,
    payload         TEXT NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    status_code     INTEGER,
    error           TEXT,
    history         TEXT,               -- every attempt, once one failed: [{at, attempt, status_code, error}]
    created_at      REAL NOT NULL,
    attempted_at    REAL,
    delivered_at    REAL
);
CREATE INDEX conveyor_webhook_deliveries_due ON conveyor_webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX conveyor_webhook_deliveries_job ON conveyor_webhook_deliveries (job_id, id) WHERE status = 'pending';
CREATE INDEX conveyor_webhook_deliveries_webhook ON conveyor_webhook_deliveries (webhook_id, id);
CREATE INDEX conveyor_webhook_deliveries_finished ON conveyor_webhook_deliveries (created_at)
    WHERE status <> 'pending';

-- Subscriptions: every history row (a transition, or a progress change) of a job that an active subscription wants.
-- Event names from the row: the creation, a start, an end, a return to the queue (a failed attempt with retries
-- left, an expired lease, a release, a manual retry: `job.retrying`), progress. The WHEN guard keeps the cost to a
-- lookup in a (normally empty) table when nothing subscribes to the event. `events` is a JSON array of names, so a
-- name in quotes is found in its text (cheaper than json_each). workflow.* events: a workflow's own trigger would
-- insert its rows here the same way (payload: the workflow JSON; job_id NULL).
CREATE TRIGGER conveyor_webhooks_outbox AFTER INSERT ON conveyor_job_events
WHEN (new.to_status IS NOT NULL OR new.message = 'progress')
     AND EXISTS (SELECT 1 FROM conveyor_webhooks
                 WHERE paused = 0 AND instr(events, '"' || CASE
                     WHEN new.to_status IS NULL THEN 'job.progress'
                     WHEN new.from_status IS NULL THEN 'job.created'
                     WHEN new.to_status = 'processing' THEN 'job.started'
                     WHEN new.to_status = 'completed' THEN 'job.completed'
                     WHEN new.to_status = 'failed' THEN 'job.failed'
                     WHEN new.to_status = 'cancelled' THEN 'job.cancelled'
                     WHEN new.from_status IN ('processing', 'failed', 'cancelled') THEN 'job.retrying'
                 END || '"') > 0)
BEGIN
    INSERT INTO conveyor_webhook_deliveries (webhook_id, event, job_id, payload, next_attempt_at, created_at)
    SELECT w.id, e.event, j.id,
           json_object('id', j.id, 'type', j.type, 'queue', j.queue, 'status', j.status, 'priority', j.priority,
                       'args', json(j.args), 'result', json(j.result), 'error', j.error,
                       'error_detail', j.error_detail, 'progress', j.progress,
                       'progress_info', json(j.progress_info), 'attempts', j.attempts,
                       'max_retries', j.max_retries, 'timeout', j.timeout, 'run_at', j.run_at,
                       'tags', json(j.tags), 'metadata', json(j.metadata), 'unique_key', j.unique_key,
                       'created_at', j.created_at, 'updated_at', j.updated_at, 'started_at', j.started_at,
                       'completed_at', j.completed_at, 'worker_id', j.worker_id,
                       'cancel_requested', j.cancel_requested),
           new.at, new.at
    FROM (SELECT CASE
                     WHEN new.to_status IS NULL THEN 'job.progress'
                     WHEN new.from_status IS NULL THEN 'job.created'
                     WHEN new.to_status = 'processing' THEN 'job.started'
                     WHEN new.to_status = 'completed' THEN 'job.completed'
                     WHEN new.to_status = 'failed' THEN 'job.failed'
                     WHEN new.to_status = 'cancelled' THEN 'job.cancelled'
                     WHEN new.from_status IN ('processing', 'failed', 'cancelled') THEN 'job.retrying'
                 END AS event) e
    JOIN conveyor_jobs j ON j.id = new.job_id
    JOIN conveyor_webhooks w ON w.paused = 0
         AND instr(w.events, '"' || e.event || '"') > 0
         AND (w.filter_type IS NULL OR w.filter_type = j.type)
         AND (w.filter_queue IS NULL OR w.filter_queue = j.queue)
         AND (w.filter_tag IS NULL OR EXISTS (SELECT 1 FROM json_each(j.tags) WHERE value = w.filter_tag))
    WHERE e.event IS NOT NULL;
END;

-- A job's own webhook_url: its terminal event (completed, failed, cancelled); the WHEN is all other jobs pay.
CREATE TRIGGER conveyor_jobs_webhook_url AFTER UPDATE OF status ON conveyor_jobs
WHEN new.webhook_url IS NOT NULL AND old.status IS NOT new.status
     AND new.status IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO conveyor_webhook_deliveries (url, event, job_id, payload, next_attempt_at, created_at)
    VALUES (new.webhook_url, 'job.' || new.status, new.id,
            json_object('id', new.id, 'type', new.type, 'queue', new.queue, 'status', new.status,
                        'priority', new.priority, 'args', json(new.args), 'result', json(new.result),
                        'error', new.error, 'error_detail', new.error_detail, 'progress', new.progress,
                        'progress_info', json(new.progress_info), 'attempts', new.attempts,
                        'max_retries', new.max_retries, 'timeout', new.timeout, 'run_at', new.run_at,
                        'tags', json(new.tags), 'metadata', json(new.metadata), 'unique_key', new.unique_key,
                        'created_at', new.created_at, 'updated_at', new.updated_at, 'started_at', new.started_at,
                        'completed_at', new.completed_at, 'worker_id', new.worker_id,
                        'cancel_requested', new.cancel_requested),
            new.updated_at, new.updated_at);
END;
