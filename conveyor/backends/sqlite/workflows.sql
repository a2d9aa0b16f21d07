-- Conveyor queries for SQLite: workflows. Their counters and status are kept by the trigger
-- conveyor_jobs_workflow_step (migration 005).

-- name: insert_workflow
INSERT INTO conveyor_workflows (id, name, status, metadata, steps_total, created_at, updated_at)
VALUES (:id, :name, 'running', :metadata, :steps_total, :now, :now);

-- name: get_workflow
SELECT * FROM conveyor_workflows WHERE id = :id;

-- name: workflow_status
SELECT status FROM conveyor_workflows WHERE id = :id;

-- name: workflow_steps
SELECT j.*, (SELECT json_group_array(d.parent_id) FROM conveyor_job_deps d WHERE d.child_id = j.id) AS depends_on
FROM conveyor_jobs j WHERE j.workflow_id = :id ORDER BY j.seq;

-- name: list_workflows
SELECT * FROM conveyor_workflows
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:name IS NULL OR name = :name)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: count_workflows
SELECT status, count(*) FROM conveyor_workflows GROUP BY status;

-- name: cancel_workflow
UPDATE conveyor_workflows SET cancelled = 1, updated_at = :now WHERE id = :id AND status = 'running';

-- name: cancel_workflow_steps
UPDATE conveyor_jobs
SET status = 'cancelled', completed_at = :now, updated_at = :now, status_message = 'workflow cancelled'
WHERE workflow_id = :id AND status IN ('waiting', 'scheduled', 'pending');

-- name: request_cancel_workflow_steps
UPDATE conveyor_jobs SET cancel_requested = 1, updated_at = :now
WHERE workflow_id = :id AND status = 'processing' AND NOT cancel_requested;

-- name: reopen_workflow
UPDATE conveyor_workflows SET cancelled = 0, updated_at = :now WHERE id = :id AND status IN ('failed', 'cancelled');

-- name: retry_workflow_steps
-- A step whose parents are not all completed waits for them again.
UPDATE conveyor_jobs
SET status = CASE WHEN deps_remaining > 0 THEN 'waiting' ELSE 'pending' END, attempts_base = attempts,
    run_at = :now, result = NULL, error = NULL, completed_at = NULL, cancel_requested = 0, progress = 0,
    progress_info = NULL, blocked_by = NULL, updated_at = :now, status_message = 'retried'
WHERE workflow_id = :id AND status IN ('failed', 'cancelled');

-- name: workflow_state
SELECT status, cancelled FROM conveyor_workflows WHERE id = :id;

-- name: workflow_steps_named
SELECT step, id, status FROM conveyor_jobs
WHERE workflow_id = :id AND step IN (SELECT value FROM json_each(:names));

-- name: lock_parent_steps
SELECT id, status, step FROM conveyor_jobs WHERE id IN (SELECT value FROM json_each(:ids)) AND workflow_id = :id;

-- name: lock_workflow_steps
-- The write transaction holds the file's lock: nothing moves before it commits.
SELECT step, id, status FROM conveyor_jobs
WHERE workflow_id = :id AND step IN (SELECT value FROM json_each(:names));

-- name: add_parents
-- Steps that were waiting now also wait for `:count` new steps.
UPDATE conveyor_jobs SET deps_remaining = deps_remaining + :count, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'waiting';

-- name: grow_workflow
UPDATE conveyor_workflows SET steps_total = steps_total + :count, updated_at = :now
WHERE id = :id AND status = 'running' AND NOT cancelled;
