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

from conveyor.backends.driver import Tx, dumps
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


GroupFetch = Callable[[Tx, str, list[str], list[int], Any], list[Any]]


@dataclass(slots=True)
class _Queue:
    """One limited or grouped queue of a claim: its allowance, and per key (grouped) the allowance and turn."""

    name: str
    allow: Allowance
    grouped: bool
    limited: bool  # a concurrency or rate limit of its own (its jobs without a key are not among `ready_jobs`)
    keys: dict[str, tuple[int, Allowance]]  # key -> (turn: 0 = least recently served, allowance)


def _group_allowances(
    tx: Tx, params: ClaimParams, name: str, settings: Sequence[Any], array: Callable[[Any], Any]
) -> dict[str, tuple[int, Allowance]]:
    """The keys of a grouped queue with ready jobs whose turn comes first (at most `limit` of them), each with what
    its limits allow: `concurrency` minus its running jobs, and what is left of its rate window."""
    group_concurrency, group_rate = settings[6], settings[7]
    turns = tx.rows("group_turns", {"queue": name, "limit": params.limit})
    limited = [t[0] for t in turns if (t[2] if t[2] is not None else group_concurrency) is not None]
    running: dict[str, int] = {}
    if limited:
        running = dict(tx.rows("running_in_groups", {"queue": name, "keys": array(limited)}))
    keys = {}
    for turn, (key, _served, concurrency, rate, window_start, window_count) in enumerate(turns):
        concurrency = concurrency if concurrency is not None else group_concurrency
        rate = rate if rate is not None else group_rate
        keys[key] = (turn, allowance(params.limit, params.now, concurrency, running.get(key, 0), rate, window_start,
                                     window_count))
    return keys


def claim_with_limits(
    tx: Tx, params: ClaimParams, limited: Sequence[str], array: Callable[[Any], Any], fetch_groups: GroupFetch
) -> tuple[list[Any], bool]:
    """Claim across limited, grouped and unlimited queues in the transaction `tx` (whose dialect locks each such
    queue's row in `lock_queue`, in name order, so concurrent claims of it take turns); returns the claimed rows, and
    whether keyed jobs were left for want of a free slot (the worker claims again when one frees).

    Fair limits per key: each grouped queue's keys with ready jobs come in turn order (least recently served
    first); each key brings its best jobs up to its allowance, ranked 0, 1, 2, ... within the key, and the jobs
    without a key count as one more key. The pool is taken by priority, then rank, then turn: at equal priority one
    job of every key before a second of any (round-robin), so a key's backlog never starves another. Keyed jobs
    are never claimed ahead of a free slot (`params.free`): a job held ahead would start after a key that arrives
    meanwhile, and limits count only what runs."""
    queues, types = array(params.queues or None), array(params.types or None)
    plans: list[_Queue] = []
    for name in sorted(limited):
        settings = tx.rows("lock_queue", {"queue": name})
        if not settings or settings[0][0]:  # gone, or paused meanwhile
            continue
        _, concurrency, rate, window_start, window_count, grouped = settings[0][:6]
        running = tx.rows("count_processing_in_queue", {"queue": name})[0][0] if concurrency is not None else 0
        allow = allowance(params.limit, params.now, concurrency, running, rate, window_start, window_count)
        keys = _group_allowances(tx, params, name, settings[0], array) if grouped and allow.n > 0 else {}
        plans.append(_Queue(name, allow, bool(grouped), concurrency is not None or rate is not None, keys))
    # candidates: (ref, queue, priority, run_at, group_key); the unlimited queues' first
    candidates = [(*c, None) for c in tx.rows("ready_jobs", {"queues": queues, "types": types, "limit": params.limit})]
    for plan in plans:
        if plan.allow.n <= 0:
            continue
        if plan.limited:
            candidates += [(*c, None) for c in tx.rows("ready_jobs_in_queue",
                                                       {"queue": plan.name, "types": types, "limit": plan.allow.n})]
        wanted = {k: min(a.n, plan.allow.n) for k, (_, a) in plan.keys.items() if a.n > 0}
        if wanted:
            share = max(1, -(-2 * params.limit // len(wanted)))  # enough for round-robin over the keys in turn
            candidates += fetch_groups(tx, plan.name, list(wanted), [min(n, share) for n in wanted.values()], types)
    turn_of = {(p.name, k): t for p in plans for k, (t, _) in p.keys.items()}
    seen: Counter[tuple[str, str | None]] = Counter()
    ranked = []
    for c in sorted(candidates, key=lambda c: (-c[2], c[3], c[0])):
        where = (c[1], c[4]) if c[4] is not None else ("", None)  # the jobs without a key: one key of their own
        ranked.append((-c[2], seen[where], turn_of.get((c[1], c[4]), -1), c[3], c[0], c))
        seen[where] += 1
    ranked.sort(key=lambda r: r[:5])
    free = params.limit if params.free is None else params.free
    allows = {p.name: p.allow.n for p in plans}
    key_allows = {(p.name, k): a.n for p in plans for k, (_, a) in p.keys.items()}
    chosen: list[Any] = []
    keyed_left = False
    for *_, c in ranked:
        if len(chosen) >= params.limit:
            break
        ref, queue, group_key = c[0], c[1], c[4]
        if queue in allows and allows[queue] <= 0:
            continue
        if group_key is not None:
            if key_allows.get((queue, group_key), 0) <= 0:
                continue
            if free <= 0:
                keyed_left = True
                continue
            free -= 1
            key_allows[(queue, group_key)] -= 1
        if queue in allows:
            allows[queue] -= 1
        chosen.append(ref)
    if not chosen:
        return [], keyed_left
    rows = tx.rows(
        "claim_chosen",
        {"refs": array(chosen), "worker_id": params.worker_id, "now": params.now, "lease_until": params.lease_until},
    )
    _record_starts(tx, params.now, plans, rows)
    return rows, keyed_left


def _record_starts(tx: Tx, now: float, plans: Sequence[_Queue], rows: Sequence[Any]) -> None:
    """Count the claim's starts in each rate window (queue and key), and move each served key to the end of the
    turns."""
    started = Counter(r[2] for r in rows)
    for plan in plans:
        window = plan.allow.window
        if window is not None and (started[plan.name] or window[1] == 0):
            tx.execute("record_queue_starts",
                       {"queue": plan.name, "window_start": window[0], "window_count": window[1] + started[plan.name]})
    by_key = Counter((r[2], r[10]) for r in rows if r[10] is not None)  # claim_chosen: queue, ..., group_key
    for plan in plans:
        batch = []
        for key, (_, allow) in plan.keys.items():
            n = by_key[(plan.name, key)]
            if n:
                start, count = allow.window if allow.window is not None else (None, None)
                batch.append([key, start, None if count is None else count + n])
        if batch:
            tx.execute("serve_groups", {"queue": plan.name, "now": now, "batch": dumps(batch)})
