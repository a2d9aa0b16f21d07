-- Webhook subscriptions and their deliveries (SPEC section 7). Delivery rows are written by the triggers of
-- migration 008; these queries read, claim and settle them.

-- name: insert_webhook
INSERT INTO conveyor_webhooks (id, url, events, filter_type, filter_queue, filter_tag, secret, paused, created_at,
                               updated_at)
VALUES (%(id)s::uuid, %(url)s, %(events)s::text[], %(filter_type)s, %(filter_queue)s, %(filter_tag)s, %(secret)s,
        %(paused)s, %(now)s, %(now)s);

-- name: list_webhooks
SELECT * FROM conveyor_webhooks ORDER BY created_at, id;

-- name: get_webhook
SELECT * FROM conveyor_webhooks WHERE id = %(id)s::uuid;

-- name: update_webhook
-- A NULL parameter leaves its column as it is; `clear_*` empties a filter. Resuming forgets the failure streak.
UPDATE conveyor_webhooks
SET events = coalesce(%(events)s::text[], events),
    filter_type = CASE WHEN %(clear_type)s THEN NULL ELSE coalesce(%(filter_type)s::text, filter_type) END,
    filter_queue = CASE WHEN %(clear_queue)s THEN NULL ELSE coalesce(%(filter_queue)s::text, filter_queue) END,
    filter_tag = CASE WHEN %(clear_tag)s THEN NULL ELSE coalesce(%(filter_tag)s::text, filter_tag) END,
    paused = coalesce(%(paused)s::boolean, paused),
    paused_reason = CASE WHEN %(paused)s::boolean IS NULL THEN paused_reason ELSE %(paused_reason)s::text END,
    failing_since = CASE WHEN %(paused)s::boolean = false THEN NULL ELSE failing_since END,
    updated_at = %(now)s
WHERE id = %(id)s::uuid;

-- name: delete_webhook_deliveries
DELETE FROM conveyor_webhook_deliveries WHERE webhook_id = %(id)s::uuid;

-- name: delete_webhook
DELETE FROM conveyor_webhooks WHERE id = %(id)s::uuid;

-- name: claim_webhook_deliveries
-- Due deliveries of active targets, each the earliest open one of its job and target (in order per job), none of a
-- target in `busy` (this sender already has as many in flight as it allows one endpoint). FOR UPDATE SKIP LOCKED:
-- two senders never take one row; the claim is a lease (`next_attempt_at` moves to `lease_until`).
WITH due AS (
    SELECT d.id FROM conveyor_webhook_deliveries d
    LEFT JOIN conveyor_webhooks w ON w.id = d.webhook_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s
      AND (d.webhook_id IS NULL OR NOT w.paused)
      AND coalesce(d.webhook_id::text, d.url) <> ALL (%(busy)s::text[])
      AND NOT EXISTS (SELECT 1 FROM conveyor_webhook_deliveries p
                      WHERE p.job_id = d.job_id AND p.status = 'pending' AND p.id < d.id
                        AND p.webhook_id IS NOT DISTINCT FROM d.webhook_id AND p.url IS NOT DISTINCT FROM d.url)
    ORDER BY d.next_attempt_at, d.id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE conveyor_webhook_deliveries d
SET attempt = d.attempt + 1, next_attempt_at = %(lease_until)s, attempted_at = %(now)s
FROM due WHERE d.id = due.id
RETURNING d.id, d.webhook_id::text, d.url, d.event, d.job_id::text, d.payload, d.attempt, d.created_at;

-- name: webhook_delivered
UPDATE conveyor_webhook_deliveries
SET status = 'delivered', status_code = %(status_code)s, error = NULL, delivered_at = %(now)s,
    history = history || jsonb_build_array(jsonb_build_object('at', %(now)s::float8, 'attempt', attempt,
              'status_code', %(status_code)s::int, 'error', NULL))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'pending';

-- name: webhook_attempt_failed
-- Another attempt at retry_at, or (retry_at NULL: retried long enough) failed for good.
UPDATE conveyor_webhook_deliveries
SET status = CASE WHEN %(retry_at)s::float8 IS NULL THEN 'failed' ELSE 'pending' END,
    next_attempt_at = coalesce(%(retry_at)s::float8, next_attempt_at),
    status_code = %(status_code)s::int, error = %(error)s,
    history = coalesce(history, '[]'::jsonb) || jsonb_build_array(jsonb_build_object('at', %(now)s::float8,
              'attempt', attempt, 'status_code', %(status_code)s::int, 'error', %(error)s::text))
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'pending';

-- name: webhook_succeeded
UPDATE conveyor_webhooks SET failing_since = NULL WHERE id = %(id)s::uuid AND failing_since IS NOT NULL;

-- name: webhook_failing
-- A failure: the streak starts (or goes on); a subscription failing since before pause_before is paused.
UPDATE conveyor_webhooks
SET failing_since = coalesce(failing_since, %(now)s),
    paused = paused OR coalesce(failing_since, %(now)s) <= %(pause_before)s,
    paused_reason = CASE WHEN coalesce(failing_since, %(now)s) <= %(pause_before)s AND NOT paused
                         THEN %(reason)s ELSE paused_reason END,
    updated_at = CASE WHEN coalesce(failing_since, %(now)s) <= %(pause_before)s AND NOT paused
                      THEN %(now)s ELSE updated_at END
WHERE id = %(id)s::uuid
RETURNING paused;

-- name: list_webhook_deliveries
SELECT id, webhook_id::text, url, event, job_id::text, attempt, status, status_code, error, history, created_at,
       attempted_at, delivered_at, next_attempt_at
FROM conveyor_webhook_deliveries
WHERE webhook_id = %(webhook_id)s::uuid AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_webhook_deliveries
SELECT id, webhook_id::text, url, event, job_id::text, attempt, status, status_code, error, history, created_at,
       attempted_at, delivered_at, next_attempt_at
FROM conveyor_webhook_deliveries
WHERE job_id = %(job_id)s::uuid
ORDER BY id;

-- name: insert_webhook_delivery
INSERT INTO conveyor_webhook_deliveries (webhook_id, url, event, job_id, payload, attempt, next_attempt_at, status,
                                         status_code, error, created_at, attempted_at, delivered_at)
VALUES (%(webhook_id)s::uuid, %(url)s, %(event)s, %(job_id)s::uuid, %(payload)s::jsonb, %(attempt)s,
        %(next_attempt_at)s, %(status)s, %(status_code)s::int, %(error)s, %(now)s, %(attempted_at)s::float8,
        %(delivered_at)s::float8);

-- name: prune_webhook_deliveries
DELETE FROM conveyor_webhook_deliveries
WHERE id IN (SELECT id FROM conveyor_webhook_deliveries WHERE status <> 'pending' AND created_at < %(before)s
             LIMIT %(batch)s);

-- name: get_webhook_secret
SELECT secret FROM conveyor_webhook_secrets WHERE name = %(name)s;

-- name: insert_webhook_secret
-- The first process to store one wins; the others read it.
INSERT INTO conveyor_webhook_secrets (name, secret, created_at) VALUES (%(name)s, %(secret)s, %(now)s)
ON CONFLICT (name) DO NOTHING;
