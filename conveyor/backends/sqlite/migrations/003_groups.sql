-- Conveyor schema for SQLite, version 3: fair limits per key. A job's `group_key` puts it in a group of its queue;
-- the queue's `group_concurrency` and `group_rate_limit` apply to each of its keys, and `conveyor_groups` holds each
-- key's turn (`served_at`: claims go round-robin, least recently served key first), its overrides, its rate window,
-- and how many of its jobs are ready (kept by the triggers below, so that a claim finds the keys with ready jobs
-- through an index instead of a scan of every key). A queue that ever had a key is `grouped`: its claims take the
-- fair path for its keyed jobs. The ready index holds only jobs without a key: the one-statement claim reads it,
-- and a backlog of keyed jobs never lies in its way.
ALTER TABLE conveyor_jobs ADD COLUMN group_key TEXT;
ALTER TABLE conveyor_queues ADD COLUMN group_concurrency INTEGER;
ALTER TABLE conveyor_queues ADD COLUMN group_rate_limit REAL;
ALTER TABLE conveyor_queues ADD COLUMN grouped INTEGER NOT NULL DEFAULT 0;

CREATE TABLE conveyor_groups (
    queue        TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    ready        INTEGER NOT NULL DEFAULT 0,   -- jobs of the key in `pending`
    served_at    REAL NOT NULL DEFAULT 0,      -- when a claim last started one of its jobs
    concurrency  INTEGER,                      -- overrides of the queue's group_concurrency / group_rate_limit
    rate_limit   REAL,
    window_start REAL NOT NULL DEFAULT 0,
    window_count INTEGER NOT NULL DEFAULT 0,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (queue, group_key)
);
CREATE INDEX conveyor_groups_turns ON conveyor_groups (queue, served_at, group_key) WHERE ready > 0;

DROP INDEX conveyor_jobs_ready;
CREATE INDEX conveyor_jobs_ready ON conveyor_jobs (priority DESC, run_at, seq) WHERE status = 'pending' AND group_key IS NULL;
CREATE INDEX conveyor_jobs_group_ready ON conveyor_jobs (queue, group_key, priority DESC, run_at, seq)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_group_top ON conveyor_jobs (queue, priority DESC, run_at, seq)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX conveyor_jobs_group_running ON conveyor_jobs (queue, group_key)
    WHERE status = 'processing' AND group_key IS NOT NULL;

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
