-- Conveyor schema for SQLite, version 5: job dependencies and workflows (SPEC section 7).
-- A job enqueued with `depends_on` starts `waiting`: the CHECK constraint of the status gains it, which on SQLite
-- means rebuilding the table (every row copied as it is, `seq` included, then the indexes and triggers of versions 1
-- to 4 again, as they were: a migration that adds a column, an index or a trigger to conveyor_jobs later must keep this
-- list in mind, since a table rebuilt here loses what is not recreated here).
-- New columns: `deps_remaining` (parents not completed yet), `has_dependents` (the job has children: only such jobs
-- fire the dependency triggers' bodies), `blocked_by` (the parent whose failure cancelled this job: retrying it puts
-- the job back in `waiting`), `workflow_id` and `step`.
DROP TRIGGER IF EXISTS conveyor_jobs_created;
DROP TRIGGER IF EXISTS conveyor_jobs_transition;
DROP TRIGGER IF EXISTS conveyor_jobs_changed;
DROP TRIGGER IF EXISTS conveyor_jobs_deleted;
DROP TRIGGER IF EXISTS conveyor_jobs_group_created;
DROP TRIGGER IF EXISTS conveyor_jobs_group_transition;
DROP TRIGGER IF EXISTS conveyor_jobs_group_deleted;

CREATE TABLE conveyor_jobs_v3 (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    type             TEXT NOT NULL,
    queue            TEXT NOT NULL DEFAULT 'default',
    status           TEXT NOT NULL CHECK (status IN
                         ('waiting', 'scheduled', 'pending', 'processing', 'completed', 'failed', 'cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    args             TEXT NOT NULL DEFAULT '{}',
    result           TEXT,
    error            TEXT,
    error_detail     TEXT,
    progress         INTEGER NOT NULL DEFAULT 0,
    progress_info    TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    attempts_base    INTEGER NOT NULL DEFAULT 0,
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
    status_message   TEXT,
    group_key        TEXT,
    deps_remaining   INTEGER NOT NULL DEFAULT 0,
    has_dependents   INTEGER NOT NULL DEFAULT 0,
    blocked_by       TEXT,
    workflow_id      TEXT,
    step             TEXT
);

INSERT INTO conveyor_jobs_v3 (seq, id, type, queue, status, priority, args, result, error, error_detail, progress,
                              progress_info, attempts, attempts_base, max_retries, timeout, run_at, tags, metadata,
                              unique_key, created_at, updated_at, started_at, completed_at, worker_id,
                              lease_expires_at, cancel_requested, status_message, group_key)
SELECT seq, id, type, queue, status, priority, args, result, error, error_detail, progress, progress_info, attempts,
       attempts_base, max_retries, timeout, run_at, tags, metadata, unique_key, created_at, updated_at, started_at,
       completed_at, worker_id, lease_expires_at, cancel_requested, status_message, group_key
FROM conveyor_jobs;

DROP TABLE conveyor_jobs;
ALTER TABLE conveyor_jobs_v3 RENAME TO conveyor_jobs;

CREATE INDEX conveyor_jobs_ready ON conveyor_jobs (priority DESC, run_at, seq)
    WHERE status = 'pending' AND group_key IS NULL;
CREATE INDEX conveyor_jobs_group_ready ON conveyor_jobs (queue, group_key, priority DESC, run_at, seq)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_group_top ON conveyor_jobs (queue, priority DESC, run_at, seq)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_group_running ON conveyor_jobs (queue, group_key)
    WHERE status = 'processing' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_due ON conveyor_jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX conveyor_jobs_running ON conveyor_jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX conveyor_jobs_finished ON conveyor_jobs (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE UNIQUE INDEX conveyor_jobs_unique_key ON conveyor_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'pending', 'processing');
CREATE INDEX conveyor_jobs_workflow ON conveyor_jobs (workflow_id) WHERE workflow_id IS NOT NULL;
CREATE INDEX conveyor_jobs_blocked ON conveyor_jobs (blocked_by) WHERE blocked_by IS NOT NULL;

-- The triggers of versions 1 and 3, as they were.
CREATE TRIGGER conveyor_jobs_created AFTER INSERT ON conveyor_jobs
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
    VALUES (new.id, new.created_at, NULL, new.status, NULL, new.status_message);
END;

CREATE TRIGGER conveyor_jobs_transition AFTER UPDATE OF status ON conveyor_jobs
WHEN old.status IS NOT new.status
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, from_status, to_status, worker_id, message)
    VALUES (new.id, new.updated_at, old.status, new.status, new.worker_id, new.status_message);
END;

CREATE TRIGGER conveyor_jobs_changed
AFTER UPDATE OF progress, progress_info, cancel_requested ON conveyor_jobs
WHEN old.status IS new.status AND (old.progress IS NOT new.progress OR old.progress_info IS NOT new.progress_info
                                   OR old.cancel_requested IS NOT new.cancel_requested)
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, worker_id, message)
    VALUES (new.id, new.updated_at, new.worker_id,
            CASE WHEN old.cancel_requested IS NOT new.cancel_requested THEN 'cancel requested' ELSE 'progress' END);
END;

CREATE TRIGGER conveyor_jobs_deleted AFTER DELETE ON conveyor_jobs
BEGIN
    INSERT INTO conveyor_job_events (job_id, at, message)
    VALUES (old.id, (julianday('now') - 2440587.5) * 86400.0, 'deleted');
    DELETE FROM conveyor_job_events
    WHERE job_id = old.id AND id < (SELECT max(id) FROM conveyor_job_events);
END;

CREATE TRIGGER conveyor_jobs_group_created AFTER INSERT ON conveyor_jobs
WHEN new.group_key IS NOT NULL
BEGIN
    INSERT INTO conveyor_queues (name, updated_at, grouped) VALUES (new.queue, new.created_at, 1)
    ON CONFLICT (name) DO UPDATE SET grouped = 1 WHERE NOT grouped;
    INSERT INTO conveyor_groups (queue, group_key, ready, updated_at)
    VALUES (new.queue, new.group_key, new.status = 'pending', new.created_at)
    ON CONFLICT (queue, group_key) DO UPDATE SET ready = ready + (new.status = 'pending');
END;

CREATE TRIGGER conveyor_jobs_group_transition AFTER UPDATE OF status ON conveyor_jobs
WHEN new.group_key IS NOT NULL AND (old.status = 'pending') <> (new.status = 'pending')
BEGIN
    UPDATE conveyor_groups SET ready = ready + CASE WHEN new.status = 'pending' THEN 1 ELSE -1 END
    WHERE queue = new.queue AND group_key = new.group_key;
END;

CREATE TRIGGER conveyor_jobs_group_deleted AFTER DELETE ON conveyor_jobs
WHEN old.group_key IS NOT NULL AND old.status = 'pending'
BEGIN
    UPDATE conveyor_groups SET ready = ready - 1 WHERE queue = old.queue AND group_key = old.group_key;
END;

-- One row per dependency: the child may start once every parent completed. The primary key serves "the children of
-- this parent" (a completion reads only its own children); the second index "the parents of this child".
CREATE TABLE conveyor_job_deps (
    parent_id TEXT NOT NULL,
    child_id  TEXT NOT NULL,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX conveyor_job_deps_child ON conveyor_job_deps (child_id);

CREATE TABLE conveyor_workflows (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    metadata     TEXT NOT NULL DEFAULT '{}',
    steps_total  INTEGER NOT NULL,
    steps_done   INTEGER NOT NULL DEFAULT 0,   -- steps completed
    steps_ended  INTEGER NOT NULL DEFAULT 0,   -- steps in a terminal state (completed, failed or cancelled)
    cancelled    INTEGER NOT NULL DEFAULT 0,   -- cancelled as a whole: it ends `cancelled` rather than `failed`
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    completed_at REAL
);
CREATE INDEX conveyor_workflows_created ON conveyor_workflows (created_at);

-- A parent completed: each child has one parent fewer to wait for; a waiting child with none left becomes ready
-- (scheduled if its run_at is still ahead). The counter counts for a child cancelled by another parent's failure
-- too, so it is right again when that parent is retried. Ordinary jobs pay only the WHEN check.
CREATE TRIGGER conveyor_jobs_release AFTER UPDATE OF status ON conveyor_jobs
WHEN new.has_dependents AND old.status IS NOT new.status AND new.status = 'completed'
BEGIN
    -- Two statements: the first, the common case of a fan-in, changes no indexed column and fires no status trigger.
    UPDATE conveyor_jobs SET deps_remaining = deps_remaining - 1
    WHERE id IN (SELECT child_id FROM conveyor_job_deps WHERE parent_id = new.id);
    UPDATE conveyor_jobs
    SET status = CASE WHEN run_at > new.updated_at THEN 'scheduled' ELSE 'pending' END,
        run_at = max(run_at, new.updated_at), updated_at = new.updated_at, status_message = 'parents completed'
    WHERE id IN (SELECT child_id FROM conveyor_job_deps WHERE parent_id = new.id)
      AND status = 'waiting' AND deps_remaining <= 0;
END;

-- A parent failed or was cancelled (by itself, not by the cascade): its waiting descendants, transitively, are
-- cancelled in one statement, each saying which parent it was.
CREATE TRIGGER conveyor_jobs_cascade AFTER UPDATE OF status ON conveyor_jobs
WHEN new.has_dependents AND old.status IS NOT new.status AND new.status IN ('failed', 'cancelled')
     AND new.blocked_by IS NULL
BEGIN
    UPDATE conveyor_jobs
    SET status = 'cancelled', blocked_by = new.id, completed_at = new.updated_at, updated_at = new.updated_at,
        error = 'parent ' || coalesce('step ''' || new.step || ''' (job ' || new.id || ')', 'job ' || new.id)
                || ' ' || new.status,
        status_message = 'parent ' || coalesce('step ''' || new.step || ''' (job ' || new.id || ')',
                                               'job ' || new.id) || ' ' || new.status
    WHERE status = 'waiting' AND id IN (
        WITH RECURSIVE below(id) AS (
            SELECT child_id FROM conveyor_job_deps WHERE parent_id = new.id
            UNION
            SELECT d.child_id FROM conveyor_job_deps d JOIN below ON d.parent_id = below.id)
        SELECT id FROM below);
END;

-- A failed or cancelled parent is retried: the jobs its failure cancelled wait for it again.
CREATE TRIGGER conveyor_jobs_restore AFTER UPDATE OF status ON conveyor_jobs
WHEN new.has_dependents AND old.status IN ('failed', 'cancelled') AND new.status IN ('waiting', 'pending', 'scheduled')
BEGIN
    UPDATE conveyor_jobs
    SET status = 'waiting', blocked_by = NULL, error = NULL, completed_at = NULL, updated_at = new.updated_at,
        status_message = 'parent retried'
    WHERE blocked_by = new.id AND status = 'cancelled';
    -- Those that still have another failed or cancelled parent (or ancestor) are cancelled again, by that one.
    UPDATE conveyor_jobs
    SET status = 'cancelled', completed_at = new.updated_at, updated_at = new.updated_at,
        blocked_by = (WITH RECURSIVE mine(id) AS (
                SELECT child_id FROM conveyor_job_deps WHERE parent_id = new.id
                UNION
                SELECT d.child_id FROM conveyor_job_deps d JOIN mine ON d.parent_id = mine.id
            ), dead(root, id) AS (
                SELECT coalesce(p.blocked_by, p.id), d.child_id
                FROM conveyor_job_deps d JOIN conveyor_jobs p ON p.id = d.parent_id
                WHERE d.child_id IN (SELECT id FROM mine) AND p.status IN ('failed', 'cancelled')
                UNION
                SELECT dead.root, d.child_id FROM conveyor_job_deps d JOIN dead ON d.parent_id = dead.id
            )
            SELECT min(root) FROM dead WHERE dead.id = conveyor_jobs.id),
        status_message = 'another parent failed or was cancelled'
    WHERE status = 'waiting' AND id IN (WITH RECURSIVE mine(id) AS (
            SELECT child_id FROM conveyor_job_deps WHERE parent_id = new.id
            UNION
            SELECT d.child_id FROM conveyor_job_deps d JOIN mine ON d.parent_id = mine.id
        ), dead(root, id) AS (
            SELECT coalesce(p.blocked_by, p.id), d.child_id
            FROM conveyor_job_deps d JOIN conveyor_jobs p ON p.id = d.parent_id
            WHERE d.child_id IN (SELECT id FROM mine) AND p.status IN ('failed', 'cancelled')
            UNION
            SELECT dead.root, d.child_id FROM conveyor_job_deps d JOIN dead ON d.parent_id = dead.id
        )
        SELECT id FROM dead);
    UPDATE conveyor_jobs
    SET error = 'parent job ' || blocked_by || ' ' || coalesce((SELECT r.status FROM conveyor_jobs r
                                                                WHERE r.id = conveyor_jobs.blocked_by), 'ended')
    WHERE blocked_by IS NOT NULL AND error IS NULL AND status = 'cancelled';
END;

-- A workflow's step moved into or out of a terminal state: its counters, then its status.
CREATE TRIGGER conveyor_jobs_workflow_step AFTER UPDATE OF status ON conveyor_jobs
WHEN new.workflow_id IS NOT NULL AND old.status IS NOT new.status
     AND (old.status IN ('completed', 'failed', 'cancelled')) <> (new.status IN ('completed', 'failed', 'cancelled'))
BEGIN
    UPDATE conveyor_workflows
    SET steps_done = steps_done + (new.status = 'completed') - (old.status = 'completed'),
        steps_ended = steps_ended + CASE WHEN new.status IN ('completed', 'failed', 'cancelled') THEN 1 ELSE -1 END,
        updated_at = new.updated_at,
        -- the SET expressions read the row before this update: the counters are recomputed where needed
        status = CASE
            WHEN steps_ended + CASE WHEN new.status IN ('completed', 'failed', 'cancelled') THEN 1 ELSE -1 END
                 < steps_total THEN 'running'
            WHEN steps_done + (new.status = 'completed') - (old.status = 'completed') = steps_total THEN 'completed'
            WHEN cancelled THEN 'cancelled'
            ELSE 'failed' END,
        completed_at = CASE
            WHEN steps_ended + CASE WHEN new.status IN ('completed', 'failed', 'cancelled') THEN 1 ELSE -1 END
                 < steps_total THEN NULL
            ELSE new.updated_at END
    WHERE id = new.workflow_id;
END;

CREATE TRIGGER conveyor_jobs_deps_deleted AFTER DELETE ON conveyor_jobs
BEGIN
    DELETE FROM conveyor_job_deps WHERE child_id = old.id;
END;
