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


TURN_STEP_S = 1e-6  # served_at of the keys of one claim: now, plus this per place of the key's last start
GroupFetch = Callable[[Tx, str, list[str], list[int], Any], list[Any]]


@dataclass(slots=True)
class _Queue:
    """One limited or grouped queue of a claim: its allowance, and per key (grouped) the allowance and turn."""

    name: str
    allow: Allowance
    limited: bool  # a concurrency or rate limit of its own (its jobs without a key are not among `ready_jobs`)
    keys: dict[str, tuple[int, Allowance]]  # key -> (turn: 0 = least recently served, allowance)
    top: list[Any]  # its best keyed jobs by priority


def _group_allowances(
    tx: Tx, params: ClaimParams, name: str, settings: Sequence[Any], array: Callable[[Any], Any], types: Any
) -> tuple[dict[str, tuple[int, Allowance]], list[Any]]:
    """The keys of a grouped queue with ready jobs whose turn comes first (at most `limit` of them), and the keys of
    its best keyed jobs by priority (so that priority wins across keys, whatever their turn), each with what its
    limits allow: `concurrency` minus its running jobs, and what is left of its rate window. Also returns those best
    jobs, as candidates."""
    group_concurrency, group_rate = settings[6], settings[7]
    most = _keyed_most(params)  # keyed jobs this claim can take at most
    turns = tx.rows("group_turns", {"queue": name, "limit": most})
    top = tx.rows("top_in_groups", {"queue": name, "types": types, "limit": most})
    in_turns = {t[0] for t in turns}
    others = sorted({c[4] for c in top} - in_turns)
    if others:
        turns += tx.rows("groups_by_key", {"queue": name, "keys": array(others)})
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
    return keys, top


def _keyed_most(params: ClaimParams) -> int:
    return params.limit if params.free is None else max(0, min(params.limit, params.free))


def claim_with_limits(
    tx: Tx, params: ClaimParams, limited: Sequence[str], array: Callable[[Any], Any], fetch_groups: GroupFetch
) -> tuple[list[Any], bool]:
    """Claim across limited, grouped and unlimited queues in the transaction `tx` (whose dialect locks each such
    queue's row in `lock_queue`, in name order, so concurrent claims of it take turns); returns the claimed rows, and
    whether keyed jobs were left, for want of a free slot or at their key's limit (the worker claims again with its
    next outcome: no notification says that a key's slot freed).

    Fair limits per key: each grouped queue's keys with ready jobs come in turn order (least recently served
    first); each key brings its best jobs up to its allowance, ranked 0, 1, 2, ... within the key, and the jobs
    without a key count as one more key. The pool is taken by priority, then rank, then turn: at equal priority one
    job of every key before a second of any (round-robin), so a key's backlog never starves another. Keyed jobs
    are never claimed ahead of a free slot (`params.free`): a job held ahead would start after a key that arrives
    meanwhile, and limits count only what runs."""
    queues, types = array(params.queues or None), array(params.types or None)
    plans: list[_Queue] = []
    left_keyed = False
    for name in sorted(limited):
        settings = tx.rows("lock_queue", {"queue": name})
        if not settings or settings[0][0]:  # gone, or paused meanwhile
            continue
        _, concurrency, rate, window_start, window_count, grouped = settings[0][:6]
        running = tx.rows("count_processing_in_queue", {"queue": name})[0][0] if concurrency is not None else 0
        allow = allowance(params.limit, params.now, concurrency, running, rate, window_start, window_count)
        keyed = grouped and allow.n > 0 and _keyed_most(params) > 0
        keys, top = _group_allowances(tx, params, name, settings[0], array, types) if keyed else ({}, [])
        left_keyed = left_keyed or (bool(grouped) and allow.n > 0 and not keyed)  # no free slot for them
        plans.append(_Queue(name, allow, concurrency is not None or rate is not None, keys, top))
    # candidates: (ref, queue, priority, run_at, group_key); the unlimited queues' first
    candidates = [(*c, None) for c in tx.rows("ready_jobs", {"queues": queues, "types": types, "limit": params.limit})]
    for plan in plans:
        if plan.allow.n <= 0:
            continue
        if plan.limited:
            candidates += [(*c, None) for c in tx.rows("ready_jobs_in_queue",
                                                       {"queue": plan.name, "types": types, "limit": plan.allow.n})]
        candidates += plan.top
        wanted = {k: min(a.n, plan.allow.n) for k, (_, a) in plan.keys.items() if a.n > 0}
        if wanted:
            share = max(1, -(-2 * _keyed_most(params) // len(wanted)))  # enough for round-robin over the keys
            candidates += fetch_groups(tx, plan.name, list(wanted), [min(n, share) for n in wanted.values()], types)
    turn_of = {(p.name, k): t for p in plans for k, (t, _) in p.keys.items()}
    seen: Counter[tuple[str, str | None]] = Counter()
    ranked = []
    unique = {c[0]: c for c in candidates}.values()  # (a job among both a key's and the queue's best)
    for c in sorted(unique, key=lambda c: (-c[2], c[3], c[0])):
        where = (c[1], c[4]) if c[4] is not None else ("", None)  # the jobs without a key: one key of their own
        ranked.append((-c[2], seen[where], turn_of.get((c[1], c[4]), -1), c[3], c[0], c))
        seen[where] += 1
    ranked.sort(key=lambda r: r[:5])
    free = params.limit if params.free is None else params.free
    allows = {p.name: p.allow.n for p in plans}
    key_allows = {(p.name, k): a.n for p in plans for k, (_, a) in p.keys.items()}
    chosen: list[Any] = []
    # keys at their limit: a finished job of this worker may free one, so it claims again with its next outcome
    keyed_left = left_keyed or any(a.n <= 0 for p in plans for _, a in p.keys.values())
    for *_, c in ranked:
        if len(chosen) >= params.limit:
            break
        ref, queue, group_key = c[0], c[1], c[4]
        if queue in allows and allows[queue] <= 0:
            continue
        if group_key is not None:
            if key_allows.get((queue, group_key), 0) <= 0:
                keyed_left = True
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
    order = {ref: i for i, ref in enumerate(chosen)}
    _record_starts(tx, params.now, plans, sorted(rows, key=lambda r: order.get(r[0], 0)))
    return rows, keyed_left


def _record_starts(tx: Tx, now: float, plans: Sequence[_Queue], rows: Sequence[Any]) -> None:
    """Count the claim's starts in each rate window (queue and key), and move each served key to the end of the
    turns, in the order of its last start in this claim (`rows` in the planner's order): the key served last
    comes last, so a claim of one job after a claim of several takes the key that waited longest; and after the
    latest turn already recorded, so the turns follow the claims' commit order whatever their processes' clocks."""
    started = Counter(r[2] for r in rows)
    for plan in plans:
        window = plan.allow.window
        if window is not None and (started[plan.name] or window[1] == 0):
            tx.execute("record_queue_starts",
                       {"queue": plan.name, "window_start": window[0], "window_count": window[1] + started[plan.name]})
    by_key = Counter((r[2], r[10]) for r in rows if r[10] is not None)  # claim_chosen: queue, ..., group_key
    last_start = {(r[2], r[10]): i for i, r in enumerate(rows) if r[10] is not None}
    for plan in plans:
        batch: list[dict[str, Any]] = []
        base = now
        if any(by_key[(plan.name, key)] for key in plan.keys):
            last = tx.rows("last_turn", {"queue": plan.name})[0][0]
            base = max(now, (last or 0.0) + TURN_STEP_S)
        for key, (_, allow) in plan.keys.items():
            n = by_key[(plan.name, key)]
            if n:
                start, count = allow.window if allow.window is not None else (None, None)
                batch.append({"queue": plan.name, "key": key, "window_start": start,
                              "window_count": None if count is None else count + n,
                              "served_at": base + last_start[(plan.name, key)] * TURN_STEP_S})
        if batch:
            tx.executemany("serve_groups", batch)
