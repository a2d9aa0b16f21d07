-- Conveyor schema for SQLite, version 7: what the webhooks of version 6 missed.
-- - A job enqueued already `cancelled` (a parent had failed or was cancelled before) ends without any UPDATE of its
--   status: its own webhook_url now gets `job.cancelled` from the insert, and a subscription gets `job.created`
--   then `job.cancelled` from its creation's history row, both in the enqueue's transaction.
-- - The payload is the whole job as the API shows it: `group_key`, `depends_on`, `workflow_id`, `step` and
--   `webhook_url` too (the parents' edges are written before the job, so an enqueue's own rows see them).
DROP TRIGGER conveyor_webhooks_outbox;
DROP TRIGGER conveyor_jobs_webhook_url;

-- The payload: the whole job as the API shows it, one definition for every trigger below (SQLite triggers cannot
-- share a function; a view of one row, by id, is flattened into the trigger's query). A migration that rebuilds
-- conveyor_jobs drops this view first and creates it again after.
CREATE VIEW conveyor_job_payloads AS
SELECT j.id, json_object('id', j.id, 'type', j.type, 'queue', j.queue, 'status', j.status, 'priority', j.priority,
                         'args', json(j.args), 'result', json(j.result), 'error', j.error,
                         'error_detail', j.error_detail, 'progress', j.progress,
                         'progress_info', json(j.progress_info), 'attempts', j.attempts,
                         'max_retries', j.max_retries, 'timeout', j.timeout, 'run_at', j.run_at,
                         'tags', json(j.tags), 'metadata', json(j.metadata), 'unique_key', j.unique_key,
                         'created_at', j.created_at, 'updated_at', j.updated_at, 'started_at', j.started_at,
                         'completed_at', j.completed_at, 'worker_id', j.worker_id,
                         'cancel_requested', j.cancel_requested, 'group_key', j.group_key,
                         'depends_on', json((SELECT json_group_array(d.parent_id) FROM conveyor_job_deps d
                                             WHERE d.child_id = j.id)),
                         'workflow_id', j.workflow_id, 'step', j.step, 'webhook_url', j.webhook_url) AS payload
FROM conveyor_jobs j;

-- Subscriptions: as in version 6, and a creation in a terminal state is two events, the creation and the end.
CREATE TRIGGER conveyor_webhooks_outbox AFTER INSERT ON conveyor_job_events
WHEN (new.to_status IS NOT NULL OR new.message = 'progress')
     AND EXISTS (SELECT 1 FROM conveyor_webhooks
                 WHERE paused = 0 AND (instr(events, '"' || CASE
                     WHEN new.to_status IS NULL THEN 'job.progress'
                     WHEN new.from_status IS NULL THEN 'job.created'
                     WHEN new.to_status = 'processing' THEN 'job.started'
                     WHEN new.to_status = 'completed' THEN 'job.completed'
                     WHEN new.to_status = 'failed' THEN 'job.failed'
                     WHEN new.to_status = 'cancelled' THEN 'job.cancelled'
                     WHEN new.from_status IN ('processing', 'failed', 'cancelled') THEN 'job.retrying'
                 END || '"') > 0
                 OR (new.from_status IS NULL AND new.to_status IN ('completed', 'failed', 'cancelled')
                     AND instr(events, '"job.' || new.to_status || '"') > 0)))
BEGIN
    INSERT INTO conveyor_webhook_deliveries (webhook_id, event, job_id, payload, next_attempt_at, created_at)
    SELECT w.id, e.event, j.id, p.payload, new.at, new.at
    FROM (SELECT 0 AS n, CASE
                     WHEN new.to_status IS NULL THEN 'job.progress'
                     WHEN new.from_status IS NULL THEN 'job.created'
                     WHEN new.to_status = 'processing' THEN 'job.started'
                     WHEN new.to_status = 'completed' THEN 'job.completed'
                     WHEN new.to_status = 'failed' THEN 'job.failed'
                     WHEN new.to_status = 'cancelled' THEN 'job.cancelled'
                     WHEN new.from_status IN ('processing', 'failed', 'cancelled') THEN 'job.retrying'
                 END AS event
          UNION ALL
          SELECT 1, 'job.' || new.to_status
          WHERE new.from_status IS NULL AND new.to_status IN ('completed', 'failed', 'cancelled')) e
    JOIN conveyor_jobs j ON j.id = new.job_id
    JOIN conveyor_job_payloads p ON p.id = j.id
    JOIN conveyor_webhooks w ON w.paused = 0
         AND instr(w.events, '"' || e.event || '"') > 0
         AND (w.filter_type IS NULL OR w.filter_type = j.type)
         AND (w.filter_queue IS NULL OR w.filter_queue = j.queue)
         AND (w.filter_tag IS NULL OR EXISTS (SELECT 1 FROM json_each(j.tags) WHERE value = w.filter_tag))
    WHERE e.event IS NOT NULL
    ORDER BY e.n, w.id;
END;

-- A job's own webhook_url: its terminal event, when an update ends it (as in version 6) or when it is stored ended.
CREATE TRIGGER conveyor_jobs_webhook_url AFTER UPDATE OF status ON conveyor_jobs
WHEN new.webhook_url IS NOT NULL AND old.status IS NOT new.status
     AND new.status IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO conveyor_webhook_deliveries (url, event, job_id, payload, next_attempt_at, created_at)
    SELECT new.webhook_url, 'job.' || new.status, new.id, p.payload, new.updated_at, new.updated_at
    FROM conveyor_job_payloads p WHERE p.id = new.id;
END;

CREATE TRIGGER conveyor_jobs_webhook_url_created AFTER INSERT ON conveyor_jobs
WHEN new.webhook_url IS NOT NULL AND new.status IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO conveyor_webhook_deliveries (url, event, job_id, payload, next_attempt_at, created_at)
    SELECT new.webhook_url, 'job.' || new.status, new.id, p.payload, new.updated_at, new.updated_at
    FROM conveyor_job_payloads p WHERE p.id = new.id;
END;

-- Workflow events: a workflow that reaches a terminal status (its last step ended; a retried workflow can end again)
-- is `workflow.<status>` to every active subscription that asks for it (the job filters do not apply: a workflow has
-- no type, queue or tag of its own). The payload is the workflow's row; job_id stays NULL.
CREATE TRIGGER conveyor_workflows_outbox AFTER UPDATE OF status ON conveyor_workflows
WHEN old.status IS NOT new.status AND new.status <> 'running'
     AND EXISTS (SELECT 1 FROM conveyor_webhooks
                 WHERE paused = 0 AND instr(events, '"workflow.' || new.status || '"') > 0)
BEGIN
    INSERT INTO conveyor_webhook_deliveries (webhook_id, event, job_id, payload, next_attempt_at, created_at)
    SELECT w.id, 'workflow.' || new.status, NULL,
           json_object('id', new.id, 'name', new.name, 'status', new.status, 'metadata', json(new.metadata),
                       'steps_total', new.steps_total, 'steps_done', new.steps_done,
                       'created_at', new.created_at, 'updated_at', new.updated_at,
                       'completed_at', new.completed_at),
           new.updated_at, new.updated_at
    FROM conveyor_webhooks w
    WHERE w.paused = 0 AND instr(w.events, '"workflow.' || new.status || '"') > 0
    ORDER BY w.id;
END;

-- Secrets of the server's own: `jobs` signs the deliveries to jobs' own webhook_url when CONVEYOR_WEBHOOK_SECRET is
-- not set (generated by the first process that needs it, then the same for every process; shown by
-- `GET /webhooks/job-secret` and `conveyor webhooks job-secret`).
CREATE TABLE conveyor_webhook_secrets (
    name       TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at REAL NOT NULL
);
