-- Conveyor queries for PostgreSQL: job dependencies and workflows (SPEC section 7). What happens when a parent ends
-- is done by the triggers of migrations 007 (cascade, restore) and 009 (releases and workflow counters, per statement).

-- name: lock_parents
-- Locked until the enqueue commits (in id order: two enqueues never deadlock), so a parent cannot complete between
-- reading its status and writing the edge: its completion waits, then its trigger sees the new child.
SELECT id::text, status, step FROM conveyor_jobs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE;

-- name: insert_graph
-- `%(batch)s` a JSON array of [id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
-- deps_remaining, has_dependents, blocked_by, error, workflow_id, step, group_key, webhook_url].
INSERT INTO conveyor_jobs (id, type, queue, status, priority, args, max_retries, timeout, run_at, tags, metadata,
                           created_at, updated_at, deps_remaining, has_dependents, blocked_by, error, completed_at,
                           status_message, workflow_id, step, group_key, webhook_url)
SELECT (v ->> 0)::uuid, v ->> 1, v ->> 2, v ->> 3, (v ->> 4)::int, v -> 5, (v ->> 6)::int, (v ->> 7)::float8,
       (v ->> 8)::float8, v -> 9, v -> 10, %(now)s::float8, %(now)s::float8, (v ->> 11)::int, (v ->> 12)::boolean,
       (v ->> 13)::uuid, v ->> 14, CASE WHEN v ->> 3 = 'cancelled' THEN %(now)s::float8 END, v ->> 14,
       (v ->> 15)::uuid, v ->> 16, v ->> 17, v ->> 18
FROM jsonb_array_elements(%(batch)s::jsonb) AS v;

-- name: insert_deps
INSERT INTO conveyor_job_deps (parent_id, child_id)
SELECT (v ->> 0)::uuid, (v ->> 1)::uuid FROM jsonb_array_elements(%(batch)s::jsonb) AS v
ON CONFLICT DO NOTHING;

-- name: mark_parents
UPDATE conveyor_jobs SET has_dependents = true WHERE id = ANY(%(ids)s::uuid[]) AND NOT has_dependents;

-- name: parent_results
SELECT p.id::text, p.step, p.workflow_id IS NOT DISTINCT FROM c.workflow_id AND p.workflow_id IS NOT NULL, p.result
FROM conveyor_job_deps d
JOIN conveyor_jobs p ON p.id = d.parent_id
JOIN conveyor_jobs c ON c.id = d.child_id
WHERE d.child_id = %(id)s::uuid;
