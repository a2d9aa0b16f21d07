-- Webhook subscriptions and their deliveries (SPEC section 7). Delivery rows are written by the triggers of
-- migration 006; these queries read, claim and settle them.

-- name: insert_webhook
INSERT INTO conveyor_webhooks (id, url, events, filter_type, filter_queue, filter_tag, secret, paused, created_at,
                               updated_at)
VALUES (:id, :url, :events, :filter_type, :filter_queue, :filter_tag, :secret, :paused, :now, :now);

-- name: list_webhooks
SELECT * FROM conveyor_webhooks ORDER BY created_at, id;

-- name: get_webhook
SELECT * FROM conveyor_webhooks WHERE id = :id;

-- name: update_webhook
-- A NULL parameter leaves its column as it is; `clear_*` empties a filter. Resuming forgets the failure streak.
UPDATE conveyor_webhooks
SET events = coalesce(:events, events),
    filter_type = CASE WHEN :clear_type THEN NULL ELSE coalesce(:filter_type, filter_type) END,
    filter_queue = CASE WHEN :clear_queue THEN NULL ELSE coalesce(:filter_queue, filter_queue) END,
    filter_tag = CASE WHEN :clear_tag THEN NULL ELSE coalesce(:filter_tag, filter_tag) END,
    paused = coalesce(:paused, paused),
    paused_reason = CASE WHEN :paused IS NULL THEN paused_reason ELSE :paused_reason END,
    failing_since = CASE WHEN :paused = 0 THEN NULL ELSE failing_since END,
    updated_at = :now
WHERE id = :id;

-- name: delete_webhook_deliveries
DELETE FROM conveyor_webhook_deliveries WHERE webhook_id = :id;

-- name: delete_webhook
DELETE FROM conveyor_webhooks WHERE id = :id;

-- name: claim_webhook_deliveries
-- Due deliveries of active targets, each the earliest open one of its job and target (in order per job), none of a
-- target in `:busy` (this sender already has as many in flight as it allows one endpoint). The claim is a lease:
-- `next_attempt_at` moves to `:lease_until`, so no other sender takes the row while this one sends it.
UPDATE conveyor_webhook_deliveries
SET attempt = attempt + 1, next_attempt_at = :lease_until, attempted_at = :now
WHERE id IN (
    SELECT d.id FROM conveyor_webhook_deliveries d
    LEFT JOIN conveyor_webhooks w ON w.id = d.webhook_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= :now
      AND (d.webhook_id IS NULL OR w.paused = 0)
      AND coalesce(d.webhook_id, d.url) NOT IN (SELECT value FROM json_each(:busy))
      AND NOT EXISTS (SELECT 1 FROM conveyor_webhook_deliveries p
                      WHERE p.job_id = d.job_id AND p.status = 'pending' AND p.id < d.id
                        AND p.webhook_id IS d.webhook_id AND p.url IS d.url)
    ORDER BY d.next_attempt_at, d.id
    LIMIT :limit
)
RETURNING id, webhook_id, url, event, job_id, payload, attempt, created_at;

-- name: webhook_delivered
UPDATE conveyor_webhook_deliveries
SET status = 'delivered', status_code = :status_code, error = NULL, delivered_at = :now,
    history = CASE WHEN history IS NOT NULL THEN json_insert(history, '$[#]', json_object('at', :now,
              'attempt', attempt, 'status_code', :status_code, 'error', NULL)) END
WHERE id = :id AND attempt = :attempt AND status = 'pending';

-- name: webhook_attempt_failed
-- Another attempt at :retry_at, or (:retry_at NULL: retried long enough) failed for good.
UPDATE conveyor_webhook_deliveries
SET status = CASE WHEN :retry_at IS NULL THEN 'failed' ELSE 'pending' END,
    next_attempt_at = coalesce(:retry_at, next_attempt_at),
    status_code = :status_code, error = :error,
    history = json_insert(coalesce(history, '[]'), '$[#]', json_object('at', :now, 'attempt', attempt,
              'status_code', :status_code, 'error', :error))
WHERE id = :id AND attempt = :attempt AND status = 'pending';

-- name: webhook_succeeded
UPDATE conveyor_webhooks SET failing_since = NULL WHERE id = :id AND failing_since IS NOT NULL;

-- name: webhook_failing
-- A failure: the streak starts (or goes on); a subscription failing since before :pause_before is paused.
UPDATE conveyor_webhooks
SET failing_since = coalesce(failing_since, :now),
    paused = CASE WHEN coalesce(failing_since, :now) <= :pause_before THEN 1 ELSE paused END,
    paused_reason = CASE WHEN coalesce(failing_since, :now) <= :pause_before AND paused = 0 THEN :reason
                         ELSE paused_reason END,
    updated_at = CASE WHEN coalesce(failing_since, :now) <= :pause_before AND paused = 0 THEN :now
                      ELSE updated_at END
WHERE id = :id
RETURNING paused;

-- name: list_webhook_deliveries
SELECT id, webhook_id, url, event, job_id, attempt, status, status_code, error, history, created_at, attempted_at,
       delivered_at, next_attempt_at
FROM conveyor_webhook_deliveries
WHERE webhook_id = :webhook_id AND (:before IS NULL OR id < :before)
ORDER BY id DESC
LIMIT :limit;

-- name: job_webhook_deliveries
SELECT id, webhook_id, url, event, job_id, attempt, status, status_code, error, history, created_at, attempted_at,
       delivered_at, next_attempt_at
FROM conveyor_webhook_deliveries
WHERE job_id = :job_id
ORDER BY id;

-- name: insert_webhook_delivery
INSERT INTO conveyor_webhook_deliveries (webhook_id, url, event, job_id, payload, attempt, next_attempt_at, status,
                                         status_code, error, created_at, attempted_at, delivered_at)
VALUES (:webhook_id, :url, :event, :job_id, :payload, :attempt, :next_attempt_at, :status, :status_code, :error,
        :now, :attempted_at, :delivered_at);

-- name: prune_webhook_deliveries
DELETE FROM conveyor_webhook_deliveries
WHERE id IN (SELECT id FROM conveyor_webhook_deliveries WHERE status <> 'pending' AND created_at < :before
             LIMIT :batch);

-- name: get_webhook_secret
SELECT secret FROM conveyor_webhook_secrets WHERE name = :name;

-- name: insert_webhook_secret
-- The first process to store one wins; the others read it.
INSERT INTO conveyor_webhook_secrets (name, secret, created_at) VALUES (:name, :secret, :now)
ON CONFLICT (name) DO NOTHING;
