-- Conveyor schema for SQLite, version 2: workers say which task types they run (so a job of a type no live worker
-- runs is shown as such), and the task registry (each task's effective defaults, written by every process that
-- starts a worker), as on PostgreSQL.
ALTER TABLE conveyor_workers ADD COLUMN types TEXT;  -- a JSON array; NULL: runs any type

CREATE TABLE conveyor_tasks (
    name        TEXT PRIMARY KEY,
    queue       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    max_retries INTEGER NOT NULL,
    timeout     REAL,
    updated_at  REAL NOT NULL
);
