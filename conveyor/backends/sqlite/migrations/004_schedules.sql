-- Conveyor schema for SQLite, version 4: cron schedules (SPEC section 7). A tick claims itself by moving
-- `next_run_at` on (guarded by its old value) in the transaction that inserts the tick's job. Times are UTC epoch
-- seconds; job options left NULL take the task's defaults when the tick's job is made.
CREATE TABLE conveyor_schedules (
    name        TEXT PRIMARY KEY,
    task        TEXT NOT NULL,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL DEFAULT 'UTC',
    args        TEXT NOT NULL DEFAULT '{}',
    queue       TEXT,
    priority    INTEGER,
    max_retries INTEGER,
    timeout     REAL,
    tags        TEXT NOT NULL DEFAULT '[]',
    paused      INTEGER NOT NULL DEFAULT 0,
    catch_up    INTEGER NOT NULL DEFAULT 0,
    next_run_at REAL,
    last_run_at REAL,
    last_job_id TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE INDEX conveyor_schedules_due ON conveyor_schedules (next_run_at) WHERE paused = 0;
