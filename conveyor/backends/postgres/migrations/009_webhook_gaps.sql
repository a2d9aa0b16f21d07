-- Conveyor schema for PostgreSQL, migration 9: what the webhooks of migration 8 missed, as on SQLite.
-- - A job enqueued already `cancelled` (a parent had failed or was cancelled before) ends without any UPDATE of its
--   status: its own webhook_url now gets `job.cancelled` from the insert, and a subscription gets `job.created`
--   then `job.cancelled` from its creation's history row, both in the enqueue's transaction.
-- - The payload is the whole job as the API shows it: `depends_on` and `webhook_url` too (the parents' edges are
--   written before the job, so an enqueue's own rows see them).
CREATE OR REPLACE FUNCTION conveyor_webhooks_outbox() RETURNS trigger LANGUAGE plpgsql
-- The planner's defaults, whoever fired the trigger (migration 8)
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
    SELECT w.id, e.event, j.id,
           to_jsonb(j) - 'seq' - 'attempts_base' - 'lease_expires_at' - 'status_message'
               || jsonb_build_object('depends_on',
                                     ARRAY(SELECT d.parent_id::text FROM conveyor_job_deps d WHERE d.child_id = j.id)),
           e.at, e.at
    FROM (SELECT n.id AS event_id, 0 AS n, n.job_id, n.at,
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
          WHERE n.to_status IS NOT NULL OR n.message = 'progress'
          UNION ALL  -- a creation in a terminal state: the creation, then the end
          SELECT n.id, 1, n.job_id, n.at, 'job.' || n.to_status
          FROM new_events n
          WHERE n.from_status IS NULL AND n.to_status IN ('completed', 'failed', 'cancelled')) e
    JOIN conveyor_jobs j ON j.id = e.job_id
    JOIN conveyor_webhooks w ON NOT w.paused AND e.event = ANY (w.events)
         AND (w.filter_type IS NULL OR w.filter_type = j.type)
         AND (w.filter_queue IS NULL OR w.filter_queue = j.queue)
         AND (w.filter_tag IS NULL OR j.tags ? w.filter_tag)
    WHERE e.event IS NOT NULL
    ORDER BY e.event_id, e.n, w.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION conveyor_jobs_webhook_url() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conveyor_webhook_deliveries (url, event, job_id, payload, next_attempt_at, created_at)
    VALUES (NEW.webhook_url, 'job.' || NEW.status, NEW.id,
            to_jsonb(NEW) - 'seq' - 'attempts_base' - 'lease_expires_at' - 'status_message'
                || jsonb_build_object('depends_on', ARRAY(SELECT d.parent_id::text FROM conveyor_job_deps d
                                                          WHERE d.child_id = NEW.id)),
            NEW.updated_at, NEW.updated_at);
    RETURN NULL;
END $$;

-- A job's own webhook_url: its terminal event, when an update ends it (migration 8) or when it is stored ended.
CREATE TRIGGER conveyor_jobs_webhook_url_created AFTER INSERT ON conveyor_jobs
    FOR EACH ROW WHEN (NEW.webhook_url IS NOT NULL AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION conveyor_jobs_webhook_url();

-- Workflow events: a workflow that reaches a terminal status (its last step ended; a retried workflow can end again)
-- is `workflow.<status>` to every active subscription that asks for it (the job filters do not apply: a workflow has
-- no type, queue or tag of its own). The payload is the workflow's row; job_id stays NULL.
CREATE FUNCTION conveyor_workflows_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conveyor_webhook_deliveries (webhook_id, event, job_id, payload, next_attempt_at, created_at)
    SELECT w.id, 'workflow.' || NEW.status, NULL, to_jsonb(NEW) - 'steps_ended' - 'cancelled',
           NEW.updated_at, NEW.updated_at
    FROM conveyor_webhooks w
    WHERE NOT w.paused AND 'workflow.' || NEW.status = ANY (w.events)
    ORDER BY w.id;
    RETURN NULL;
END $$;
CREATE TRIGGER conveyor_workflows_outbox AFTER UPDATE OF status ON conveyor_workflows
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'running')
    EXECUTE FUNCTION conveyor_workflows_outbox();
