-- Fair limits per key (the claim planner in conveyor/backends/limits.py, and the groups of a queue).

-- name: group_turns
-- The keys of a queue with ready jobs, least recently served first: an index range, never a scan of every key.
SELECT group_key, served_at, concurrency, rate_limit, window_start, window_count FROM conveyor_groups
WHERE queue = %(queue)s AND ready > 0
ORDER BY served_at, group_key
LIMIT %(limit)s;

-- name: top_in_groups
-- A queue's best keyed jobs by priority, whatever their key's turn.
SELECT id::text, queue, priority, run_at, group_key FROM conveyor_jobs
WHERE status = 'pending' AND group_key IS NOT NULL AND queue = %(queue)s
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
ORDER BY priority DESC, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: groups_by_key
SELECT group_key, served_at, concurrency, rate_limit, window_start, window_count FROM conveyor_groups
WHERE queue = %(queue)s AND group_key = ANY(%(keys)s::text[])
ORDER BY served_at, group_key;

-- name: running_in_groups
SELECT group_key, count(*) FROM conveyor_jobs
WHERE status = 'processing' AND group_key IS NOT NULL AND queue = %(queue)s AND group_key = ANY(%(keys)s::text[])
GROUP BY group_key;

-- name: ready_in_groups
-- Each key's best `n` ready jobs, in one statement (an index range per key); locked, skipping other claims'.
SELECT j.id::text, j.queue, j.priority, j.run_at, j.group_key
FROM unnest(%(keys)s::text[], %(limits)s::int[]) AS k(key, n)
CROSS JOIN LATERAL (
    SELECT id, queue, priority, run_at, group_key FROM conveyor_jobs
    WHERE status = 'pending' AND group_key IS NOT NULL AND queue = %(queue)s AND group_key = k.key
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
    ORDER BY priority DESC, run_at, id
    LIMIT k.n
    FOR UPDATE SKIP LOCKED
) j;

-- name: last_turn
-- The latest turn among the keys with ready jobs (the end of the turns index): a claim's keys go after it, so the
-- turns follow the order of the claims' commits whatever the clocks of their processes say.
SELECT max(served_at) FROM conveyor_groups WHERE queue = %(queue)s AND ready > 0;

-- name: serve_groups
-- One row per key served: its new place in the turns, and its rate window (null: no rate limit, kept as it is).
UPDATE conveyor_groups
SET served_at = %(served_at)s, window_start = coalesce(%(window_start)s::float8, window_start),
    window_count = coalesce(%(window_count)s::int, window_count)
WHERE queue = %(queue)s AND group_key = %(key)s;

-- name: list_groups
-- A queue's keys with their counts and limits, busiest first (running, then ready).
SELECT g.group_key, g.ready, g.concurrency, g.rate_limit, g.served_at,
       (SELECT count(*) FROM conveyor_jobs j
        WHERE j.status = 'processing' AND j.group_key = g.group_key AND j.queue = g.queue) AS running
FROM conveyor_groups g
WHERE g.queue = %(queue)s AND (%(key)s::text IS NULL OR g.group_key = %(key)s::text)
ORDER BY running DESC, g.ready DESC, g.group_key
LIMIT %(limit)s;

-- name: queue_group_limits
SELECT group_concurrency, group_rate_limit FROM conveyor_queues WHERE name = %(queue)s;

-- name: count_groups
SELECT count(*) FROM conveyor_groups WHERE queue = %(queue)s;

-- name: set_group
INSERT INTO conveyor_groups (queue, group_key, concurrency, rate_limit, updated_at)
VALUES (%(queue)s, %(key)s, %(concurrency)s::int, %(rate_limit)s::float8, %(now)s)
ON CONFLICT (queue, group_key) DO UPDATE SET concurrency = EXCLUDED.concurrency, rate_limit = EXCLUDED.rate_limit,
                                             updated_at = EXCLUDED.updated_at;

-- name: mark_grouped
INSERT INTO conveyor_queues (name, updated_at, grouped) VALUES (%(queue)s, %(now)s, true)
ON CONFLICT (name) DO UPDATE SET grouped = true;

-- name: prune_groups
-- Keys with nothing ready, nothing running, no override, not served since `before`.
DELETE FROM conveyor_groups g
WHERE ready = 0 AND concurrency IS NULL AND rate_limit IS NULL AND served_at < %(before)s AND updated_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM conveyor_jobs j WHERE j.status = 'processing' AND j.group_key IS NOT NULL
                  AND j.queue = g.queue AND j.group_key = g.group_key);
