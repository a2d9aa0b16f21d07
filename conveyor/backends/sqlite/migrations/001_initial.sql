-- Conveyor schema for SQLite, version 1. Times are UTC epoch seconds (REAL).
CREATE TABLE IF NOT EXISTS conveyor_jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    type             TEXT NOT NULL,
    queue            TEXT NOT NULL DEFAULT 'default',
    status           TEXT NOT NULL CHECK (status IN
                         ('scheduled', 'pending', 'processing', 'completed', 'failed', 'cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    args             TEXT NOT NULL DEFAULT '{}',
    result           TEXT,
    error            TEXT,
    error_detail     TEXT,
    progress         INTEGER NOT NULL DEFAULT 0,
    progress_info    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    attempts_base    INTEGER NOT NULL DEFAULT 0,   -- attempts that do not count against max_retries
    max_retries      INTEGER NOT NULL,
    timeout          REAL,
    run_at           REAL NOT NULL,
    tags             TEXT NOT NULL DEFAULT '[]',
    metadata         TEXT NOT NULL DEFAULT '{}',
    unique_key       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    completed_at     REAL,
    worker_id        TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    status_message   TEXT                          -- why the last transition happened, copied into its event
);

CREATE INDEX IF NOT EXISTS conveyor_jobs_ready ON conveyor_jobs (priority DESC, run_at, seq)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS conveyor_jobs_due ON conveyor_jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS conveyor_jobs_running ON conveyor_jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS conveyor_jobs_finished ON conveyor_jobs (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE UNIQUE INDEX IF NOT EXISTS conveyor_jobs_unique_key ON conveyor_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing');

-- Job history and change outbox in one table. A row with a `to_status` is a transition (the job's history); a row
-- without one records another change (progress, a cancel request, a deletion) for live event streams only. Live
-- streams (SSE) in any process read every row by increasing id. One row per change keeps writes cheap.
CREATE TABLE IF NOT EXISTS conveyor_job_events (
    id          INTEGER PRIMARY KEY,   -- max(id) + 1: never reused, since the newest row is never deleted
    job_id      TEXT NOT NULL,
    at          REAL NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    worker_id   TEXT,
    message     TEXT
);
CREATE INDEX IF NOT EXISTS conveyor_job_events_job ON conveyor_job_events (job_id);
CREATE INDEX IF NOT EXISTS conveyor_job_events_changes ON conveyor_job_events (at) WHERE to_status IS NULL;

-- Every change is recorded by the database itself, so no code path can forget one.
CREATE TRIGGER IF NOT EXISTS conveyor_jobs_created AFTER INSERT ON conveyor_jobs
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
    VALUES (new.id, new.created_at, NULL, new.status, NULL, new.status_message);
END;

CREATE TRIGGER IF NOT EXISTS conveyor_jobs_transition AFTER UPDATE OF status ON conveyor_jobs
WHEN old.status IS NOT new.status
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
    VALUES (new.id, new.updated_at, old.status, new.status, new.worker_id, new.status_message);
END;

CREATE TRIGGER IF NOT EXISTS conveyor_jobs_changed
AFTER UPDATE OF progress, progress_info, cancel_requested ON conveyor_jobs
WHEN old.status IS new.status AND (old.progress IS NOT new.progress OR old.progress_info IS NOT new.progress_info
                                   OR old.cancel_requested IS NOT new.cancel_requested)
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, worker_id, message)
    VALUES (new.id, new.updated_at, new.worker_id,
            CASE WHEN old.cancel_requested IS NOT new.cancel_requested THEN 'cancel requested' ELSE 'progress' END);
END;

-- The 'deleted' change goes in first, so the history it replaces never held the newest id (ids are max + 1).
CREATE TRIGGER IF NOT EXISTS conveyor_jobs_deleted AFTER DELETE ON conveyor_jobs
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, message)
    VALUES (old.id, (julianday('now') - 2440587.5) * 86400.0, 'deleted');
    DELETE FROM conveyor_job_events
    WHERE job_id = old.id AND id < (SELECT max(id) FROM conveyor_job_events);
END;

CREATE TABLE IF NOT EXISTS conveyor_queues (
    name          TEXT PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    concurrency   INTEGER,
    rate_limit    REAL,
    window_start  REAL NOT NULL DEFAULT 0,   -- rate limit: start of the current window
    window_count  INTEGER NOT NULL DEFAULT 0,
    updated_at    REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS conveyor_workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT,
    slots        INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at   REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS conveyor_schema (version INTEGER NOT NULL);
