-- Conveyor schema for PostgreSQL, migration 6: cron schedules (SPEC section 7). A tick claims itself by moving
-- `next_run_at` on (guarded by its old value) in the transaction that inserts the tick's job. Times are UTC epoch
-- seconds; job options left NULL take the task's defaults when the tick's job is made.
CREATE TABLE conveyor_schedules (
    name        text PRIMARY KEY,
    task        text NOT NULL,
    cron        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'UTC',
    args        jsonb NOT NULL DEFAULT '{}',
    queue       text,
    priority    integer,
    max_retries integer,
    timeout     double precision,
    tags        jsonb NOT NULL DEFAULT '[]',
    paused      boolean NOT NULL DEFAULT false,
    catch_up    boolean NOT NULL DEFAULT false,
    next_run_at double precision,
    last_run_at double precision,
    last_job_id uuid,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE INDEX conveyor_schedules_due ON conveyor_schedules (next_run_at) WHERE NOT paused;
