-- Fair limits per key (the claim planner in conveyor/backends/limits.py, and the groups of a queue).

-- name: group_turns
-- The keys of a queue with ready jobs, least recently served first: an index range, never a scan of every key.
SELECT group_key, served_at, concurrency, rate_limit, window_start, window_count FROM conveyor_groups
WHERE queue = :queue AND ready > 0
ORDER BY served_at, group_key
LIMIT :limit;

-- name: top_in_groups
-- A queue's best keyed jobs by priority, whatever their key's turn.
SELECT seq, queue, priority, run_at, group_key FROM conveyor_jobs
WHERE status = 'pending' AND group_key IS NOT NULL AND queue = :queue
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
ORDER BY priority DESC, run_at, seq
LIMIT :limit;

-- name: groups_by_key
SELECT group_key, served_at, concurrency, rate_limit, window_start, window_count FROM conveyor_groups
WHERE queue = :queue AND group_key IN (SELECT value FROM json_each(:keys))
ORDER BY served_at, group_key;

-- name: running_in_groups
SELECT group_key, count(*) FROM conveyor_jobs
WHERE status = 'processing' AND group_key IS NOT NULL AND queue = :queue
  AND group_key IN (SELECT value FROM json_each(:keys))
GROUP BY group_key;

-- name: ready_in_groups
-- Each key's best `:limit` ready jobs (`:keys`: a JSON array), in one statement: an index range per key. (SQLite's
-- LIMIT cannot read the outer row: a key allowed fewer brings more, and the planner takes only what it allows.)
SELECT j.seq, j.queue, j.priority, j.run_at, j.group_key
FROM json_each(:keys) AS k
JOIN conveyor_jobs AS j ON j.seq IN (
    SELECT seq FROM conveyor_jobs
    WHERE status = 'pending' AND group_key IS NOT NULL AND queue = :queue AND group_key = k.value
      AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
    ORDER BY priority DESC, run_at, seq
    LIMIT :limit);

-- name: last_turn
-- The latest turn among the keys with ready jobs (the end of the turns index): a claim's keys go after it, so the
-- turns follow the order of the claims' commits whatever the clocks of their processes say.
SELECT max(served_at) FROM conveyor_groups WHERE queue = :queue AND ready > 0;

-- name: serve_groups
-- One row per key served: its new place in the turns, and its rate window (null: no rate limit, kept as it is).
UPDATE conveyor_groups
SET served_at = :served_at, window_start = coalesce(:window_start, window_start),
    window_count = coalesce(:window_count, window_count)
WHERE queue = :queue AND group_key = :key;

-- name: list_groups
-- A queue's keys with their counts and limits, busiest first (running, then ready).
SELECT g.group_key, g.ready, g.concurrency, g.rate_limit, g.served_at,
       (SELECT count(*) FROM conveyor_jobs j
        WHERE j.status = 'processing' AND j.group_key = g.group_key AND j.queue = g.queue) AS running
FROM conveyor_groups g
WHERE g.queue = :queue AND (:key IS NULL OR g.group_key = :key)
ORDER BY running DESC, g.ready DESC, g.group_key
LIMIT :limit;

-- name: queue_group_limits
SELECT group_concurrency, group_rate_limit FROM conveyor_queues WHERE name = :queue;

-- name: count_groups
SELECT count(*) FROM conveyor_groups WHERE queue = :queue;

-- name: set_group
INSERT INTO conveyor_groups (queue, group_key, concurrency, rate_limit, updated_at)
VALUES (:queue, :key, :concurrency, :rate_limit, :now)
ON CONFLICT (queue, group_key) DO UPDATE SET concurrency = excluded.concurrency, rate_limit = excluded.rate_limit,
                                             updated_at = excluded.updated_at;

-- name: mark_grouped
INSERT INTO conveyor_queues (name, updated_at, grouped) VALUES (:queue, :now, 1)
ON CONFLICT (name) DO UPDATE SET grouped = 1;

-- name: prune_groups
-- Keys with nothing ready, nothing running, no override, not served since `before`.
DELETE FROM conveyor_groups
WHERE ready = 0 AND concurrency IS NULL AND rate_limit IS NULL AND served_at < :before AND updated_at < :before
  AND NOT EXISTS (SELECT 1 FROM conveyor_jobs j WHERE j.status = 'processing' AND j.group_key IS NOT NULL
                  AND j.queue = conveyor_groups.queue AND j.group_key = conveyor_groups.group_key);
