-- Cron schedules (SPEC section 7): `conveyor.backends.schedules`.

-- name: list_schedules
SELECT * FROM conveyor_schedules ORDER BY name;

-- name: get_schedule
SELECT * FROM conveyor_schedules WHERE name = %(name)s;

-- name: insert_schedule
INSERT INTO conveyor_schedules (name, task, cron, timezone, args, queue, priority, max_retries, timeout, tags,
                                paused, catch_up, next_run_at, created_at, updated_at)
VALUES (%(name)s, %(task)s, %(cron)s, %(timezone)s, %(args)s::jsonb, %(queue)s, %(priority)s::int,
        %(max_retries)s::int, %(timeout)s::float8, %(tags)s::jsonb, %(paused)s::boolean, %(catch_up)s::boolean,
        %(next_run_at)s::float8, %(now)s::float8, %(now)s::float8)
ON CONFLICT (name) DO NOTHING;

-- name: update_schedule
-- `reschedule`: the cron, the time zone or `paused` changed, so the next tick is the one computed now; otherwise the
-- stored one stays (a tick claimed meanwhile is not handed out again).
UPDATE conveyor_schedules
SET task = %(task)s, cron = %(cron)s, timezone = %(timezone)s, args = %(args)s::jsonb, queue = %(queue)s,
    priority = %(priority)s::int, max_retries = %(max_retries)s::int, timeout = %(timeout)s::float8,
    tags = %(tags)s::jsonb, paused = %(paused)s::boolean, catch_up = %(catch_up)s::boolean,
    next_run_at = CASE WHEN %(reschedule)s::boolean THEN %(next_run_at)s::float8 ELSE next_run_at END,
    updated_at = %(now)s::float8
WHERE name = %(name)s;

-- name: delete_schedule
DELETE FROM conveyor_schedules WHERE name = %(name)s;

-- name: due_schedules
SELECT * FROM conveyor_schedules WHERE NOT paused AND next_run_at <= %(now)s::float8 ORDER BY next_run_at
LIMIT %(limit)s::int;

-- name: next_schedule_at
SELECT min(next_run_at) FROM conveyor_schedules WHERE NOT paused;

-- name: claim_tick
-- Guarded by the tick this process read: a process that lost the race changes nothing, and inserts nothing. A row
-- another process is firing is skipped rather than waited for (if that process dies, its transaction rolls back
-- and the tick is still due at the next pass), so racing schedulers split the due schedules instead of queueing.
UPDATE conveyor_schedules SET next_run_at = %(next_run_at)s::float8
WHERE name = (SELECT name FROM conveyor_schedules
              WHERE name = %(name)s AND next_run_at = %(due)s::float8 AND NOT paused
              FOR UPDATE SKIP LOCKED);

-- name: record_schedule_run
UPDATE conveyor_schedules SET last_run_at = %(at)s::float8, last_job_id = %(job_id)s::uuid WHERE name = %(name)s;
