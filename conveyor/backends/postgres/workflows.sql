-- Conveyor queries for PostgreSQL: workflows. Their counters and status are kept by the trigger
-- conveyor_jobs_workflow_step (migration 007).

-- name: insert_workflow
INSERT INTO conveyor_workflows (id, name, status, metadata, steps_total, created_at, updated_at)
VALUES (%(id)s::uuid, %(name)s, 'running', %(metadata)s::jsonb, %(steps_total)s::int, %(now)s::float8,
        %(now)s::float8);

-- name: get_workflow
SELECT * FROM conveyor_workflows WHERE id = %(id)s::uuid;

-- name: workflow_status
SELECT status FROM conveyor_workflows WHERE id = %(id)s::uuid FOR UPDATE;

-- name: workflow_steps
SELECT j.*, ARRAY(SELECT d.parent_id::text FROM conveyor_job_deps d WHERE d.child_id = j.id) AS depends_on
FROM conveyor_jobs j WHERE j.workflow_id = %(id)s::uuid ORDER BY j.id;

-- name: list_workflows
SELECT * FROM conveyor_workflows
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: count_workflows
SELECT status, count(*) FROM conveyor_workflows GROUP BY status;

-- name: cancel_workflow
UPDATE conveyor_workflows SET cancelled = true, updated_at = %(now)s::float8
WHERE id = %(id)s::uuid AND status = 'running';

-- name: cancel_workflow_steps
UPDATE conveyor_jobs
SET status = 'cancelled', completed_at = %(now)s::float8, updated_at = %(now)s::float8,
    status_message = 'workflow cancelled'
WHERE workflow_id = %(id)s::uuid AND status IN ('waiting', 'scheduled', 'pending');

-- name: request_cancel_workflow_steps
UPDATE conveyor_jobs SET cancel_requested = true, updated_at = %(now)s::float8
WHERE workflow_id = %(id)s::uuid AND status = 'processing' AND NOT cancel_requested;

-- name: reopen_workflow
UPDATE conveyor_workflows SET cancelled = false, updated_at = %(now)s::float8
WHERE id = %(id)s::uuid AND status IN ('failed', 'cancelled');

-- name: retry_workflow_steps
-- A step whose parents are not all completed waits for them again.
UPDATE conveyor_jobs
SET status = CASE WHEN deps_remaining > 0 THEN 'waiting' ELSE 'pending' END, attempts_base = attempts,
    run_at = %(now)s::float8, result = NULL, error = NULL, completed_at = NULL, cancel_requested = false,
    progress = 0, progress_info = NULL, blocked_by = NULL, updated_at = %(now)s::float8, status_message = 'retried'
WHERE workflow_id = %(id)s::uuid AND status IN ('failed', 'cancelled');

-- name: workflow_state
SELECT status, cancelled FROM conveyor_workflows WHERE id = %(id)s::uuid;

-- name: workflow_steps_named
SELECT step, id::text, status FROM conveyor_jobs WHERE workflow_id = %(id)s::uuid AND step = ANY(%(names)s::text[]);

-- name: lock_parent_steps
-- The new steps' parents, locked first (in id order): a completion locks a parent, then its children.
SELECT id::text, status, step FROM conveyor_jobs
WHERE id = ANY(%(ids)s::uuid[]) AND workflow_id = %(id)s::uuid ORDER BY id FOR UPDATE;

-- name: lock_workflow_steps
-- Locked until the growth commits, in id order (as lock_parents): a parent cannot complete, nor a waiting step be
-- released, meanwhile. The workflow's row is locked last (grow_workflow), as a step's completion does.
SELECT step, id::text, status FROM conveyor_jobs
WHERE workflow_id = %(id)s::uuid AND step = ANY(%(names)s::text[]) ORDER BY id FOR UPDATE;

-- name: add_parents
-- Steps that were waiting now also wait for `%(count)s` new steps.
UPDATE conveyor_jobs SET deps_remaining = deps_remaining + %(count)s::int, updated_at = %(now)s::float8
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'waiting';

-- name: grow_workflow
UPDATE conveyor_workflows SET steps_total = steps_total + %(count)s::int, updated_at = %(now)s::float8
WHERE id = %(id)s::uuid AND status = 'running' AND NOT cancelled;
