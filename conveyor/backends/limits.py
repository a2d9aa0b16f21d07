"""Queue limits in a claim: how many jobs a limited queue may start now, and the best candidates across queues.

A queue with a `concurrency` (most jobs processing at once, across all workers) or a `rate_limit` (starts per second,
counted in windows) allows a claim only part of its `limit`. The candidates of the unlimited queues and of each limited
queue up to its allowance are pooled and the best of them all taken, so a limited queue's jobs neither jump ahead of
better jobs elsewhere nor starve.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.backends.driver import Tx
from conveyor.backends.params import ClaimParams


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one limited queue allows this claim: `n` starts, and its rate window when it has a rate limit."""

    n: int
    window: tuple[float, int] | None = None  # (window start, starts counted in it so far)


def rate_window(rate: float) -> tuple[float, int]:
    """A rate limit's window (seconds) and how many starts it allows: a second, or longer for a rate below one per
    second (0.2/s: one start per 5 s window)."""
    if rate <= 0:
        return math.inf, 0
    window = max(1.0, 1.0 / rate)
    return window, max(1, math.floor(rate * window))


def allowance(
    limit: int,
    now: float,
    concurrency: int | None,
    running: int,
    rate: float | None,
    window_start: float,
    window_count: int,
) -> Allowance:
    n = limit
    if concurrency is not None:
        n = min(n, concurrency - running)
    if rate is None:
        return Allowance(n)
    window, per_window = rate_window(rate)
    if now - window_start >= window:
        window_start, window_count = now, 0
    return Allowance(min(n, per_window - window_count), (window_start, window_count))


def claim_with_limits(tx: Tx, params: ClaimParams, limited: Sequence[str], array: Callable[[Any], Any]) -> list[Any]:
    """Claim across limited and unlimited queues in the transaction `tx` (whose dialect locks each limited queue's
    row in `lock_queue`, in name order, so concurrent claims in it take turns); returns the claimed rows."""
    queues, types = array(params.queues or None), array(params.types or None)
    allowed: dict[str, Allowance] = {}
    for name in sorted(limited):
        settings = tx.rows("lock_queue", {"queue": name})
        if not settings or settings[0][0]:  # gone, or paused meanwhile
            continue
        _, concurrency, rate, window_start, window_count = settings[0]
        running = tx.rows("count_processing_in_queue", {"queue": name})[0][0] if concurrency is not None else 0
        allowed[name] = allowance(params.limit, params.now, concurrency, running, rate, window_start, window_count)
    candidates = tx.rows("ready_jobs", {"queues": queues, "types": types, "limit": params.limit})
    for name, allow in allowed.items():
        if allow.n > 0:
            candidates += tx.rows("ready_jobs_in_queue", {"queue": name, "types": types, "limit": allow.n})
    # (ref, queue, priority, run_at): ref orders jobs of equal priority and run_at in enqueue order
    candidates.sort(key=lambda c: (-c[2], c[3], c[0]))
    chosen = [c[0] for c in candidates[: params.limit]]
    if not chosen:
        return []
    rows = tx.rows(
        "claim_chosen",
        {
            "refs": array(chosen),
            "worker_id": params.worker_id,
            "now": params.now,
            "lease_until": params.lease_until,
        },
    )
    started = Counter(r[2] for r in rows)
    for name, allow in allowed.items():
        if allow.window is not None and (started[name] or allow.window[1] == 0):
            window_start, window_count = allow.window
            tx.execute(
                "record_queue_starts",
                {"queue": name, "window_start": window_start, "window_count": window_count + started[name]},
            )
    return rows
