-- Conveyor queries for SQLite: job dependencies and workflows (SPEC section 7). What happens when a parent ends is
-- done by the triggers of migration 005.

-- name: lock_parents
-- The enqueue's write transaction holds the file's write lock: no parent can change before it commits.
SELECT id, status, step FROM conveyor_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: insert_graph
-- `:batch` a JSON array of [id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
-- deps_remaining, has_dependents, blocked_by, error, workflow_id, step, group_key, webhook_url].
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           created_at, updated_at, deps_remaining, has_dependents, blocked_by, error, completed_at,
                           status_message, workflow_id, step, group_key, webhook_url)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value -> 5, value ->> 6, value ->> 7,
       value ->> 8, value -> 9, value -> 10, :now, :now, value ->> 11, value ->> 12, value ->> 13, value ->> 14,
       CASE WHEN value ->> 3 = 'cancelled' THEN :now END, value ->> 14, value ->> 15, value ->> 16,
       value ->> 17, value ->> 18
FROM json_each(:batch);

-- name: insert_deps
INSERT INTO conveyor_job_deps (parent_id, child_id)
SELECT value ->> 0, value ->> 1 FROM json_each(:batch) WHERE true
ON CONFLICT DO NOTHING;

-- name: mark_parents
UPDATE conveyor_jobs SET has_dependents = 1 WHERE id IN (SELECT value FROM json_each(:ids)) AND NOT has_dependents;

-- name: parent_results
SELECT p.id, p.step, p.workflow_id IS c.workflow_id AND p.workflow_id IS NOT NULL, p.result
FROM conveyor_job_deps d
JOIN conveyor_jobs p ON p.id = d.parent_id
JOIN conveyor_jobs c ON c.id = d.child_id
WHERE d.child_id = :id;
