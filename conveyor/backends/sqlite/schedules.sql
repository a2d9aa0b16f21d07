-- Cron schedules (SPEC section 7): `conveyor.backends.schedules`.

-- name: list_schedules
SELECT * FROM conveyor_schedules ORDER BY name;

-- name: get_schedule
SELECT * FROM conveyor_schedules WHERE name = :name;

-- name: insert_schedule
INSERT INTO conveyor_schedules (name, task, cron, timezone, args, queue, priority, max_retries, timeout, tags,
                                paused, catch_up, next_run_at, created_at, updated_at)
VALUES (:name, :task, :cron, :timezone, :args, :queue, :priority, :max_retries, :timeout, :tags, :paused, :catch_up,
        :next_run_at, :now, :now)
ON CONFLICT (name) DO NOTHING;

-- name: update_schedule
-- `reschedule`: the cron, the time zone or `paused` changed, so the next tick is the one computed now; otherwise the
-- stored one stays (a tick claimed meanwhile is not handed out again).
UPDATE conveyor_schedules
SET task = :task, cron = :cron, timezone = :timezone, args = :args, queue = :queue, priority = :priority,
    max_retries = :max_retries, timeout = :timeout, tags = :tags, paused = :paused, catch_up = :catch_up,
    next_run_at = CASE WHEN :reschedule THEN :next_run_at ELSE next_run_at END, updated_at = :now
WHERE name = :name;

-- name: delete_schedule
DELETE FROM conveyor_schedules WHERE name = :name;

-- name: due_schedules
SELECT * FROM conveyor_schedules WHERE paused = 0 AND next_run_at <= :now ORDER BY next_run_at LIMIT :limit;

-- name: next_schedule_at
SELECT min(next_run_at) FROM conveyor_schedules WHERE paused = 0;

-- name: claim_tick
-- Guarded by the tick this process read: a process that lost the race changes nothing, and inserts nothing.
UPDATE conveyor_schedules SET next_run_at = :next_run_at
WHERE name = :name AND next_run_at = :due AND paused = 0;

-- name: record_schedule_run
UPDATE conveyor_schedules SET last_run_at = :at, last_job_id = :job_id WHERE name = :name;
