"""Fair limits per key (SPEC section 7), on both backends: round-robin claims across the keys with ready jobs, the
queue's per-key concurrency and rate limit, a key's own overrides, and what a claim leaves for a free slot."""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

import pytest

from conveyor import Conveyor, JobStatus
from conveyor.backends.params import ClaimParams, ClaimResult, Completed
from conveyor.errors import ConfigError, InvalidArgumentsError


@pytest.fixture
def keyed_app(app: Conveyor) -> Conveyor:
    @app.task(name="noop")
    def noop(i: int = 0) -> int:
        return i

    @app.task(name="tenant_job", group_key=lambda args: f"tenant:{args['tenant']}")
    def tenant_job(tenant: str) -> str:
        return tenant

    return app


def claim(app: Conveyor, limit: int, *, free: int | None = None, now: float | None = None,
          lease_s: float = 30.0, worker: str = "w1") -> ClaimResult:
    at = app.clock() if now is None else now
    return app.backend.claim_jobs(ClaimParams(worker, limit, at, at + lease_s, None, None,
                                              limit if free is None else free))


def keys_of(app: Conveyor, result: ClaimResult) -> list[str | None]:
    return [app.require_job(j.id).group_key for j in result.jobs]


def complete(app: Conveyor, result: ClaimResult) -> None:
    app.backend.finish_jobs([Completed(j.id, j.lease, None) for j in result.jobs], app.clock())


# ------------------------------------------------------------------------------------------------ round-robin
def test_a_backlog_of_one_key_does_not_starve_another(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.enqueue_many("noop", [{"i": i} for i in range(500)], group_key="A")
    app.enqueue_many("noop", [{"i": i} for i in range(10)], group_key="B")
    first = keys_of(app, claim(app, 20))
    assert Counter(first) == {"A": 10, "B": 10}  # one of each key in turn, though A's 500 came first
    assert first.count("B") == 10


def test_turns_go_to_the_least_recently_served_key(keyed_app: Conveyor) -> None:
    app = keyed_app
    for key in ("A", "B", "C"):
        app.enqueue_many("noop", [{"i": i} for i in range(5)], group_key=key)
    served = [keys_of(app, claim(app, 1))[0] for _ in range(6)]
    assert sorted(served[:3]) == ["A", "B", "C"] and sorted(served[3:]) == ["A", "B", "C"]


def test_priority_still_wins_across_keys(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.enqueue_many("noop", [{"i": i} for i in range(20)], group_key="A")
    urgent = app.enqueue("noop", {"i": 99}, group_key="B", priority=5)
    got = claim(app, 1)
    assert [j.id for j in got.jobs] == [urgent.id]


def test_jobs_without_a_key_in_a_keyed_queue_take_turns_too(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.enqueue_many("noop", [{"i": i} for i in range(50)], group_key="A")
    app.enqueue_many("noop", [{"i": i} for i in range(3)])
    assert Counter(keys_of(app, claim(app, 6))) == {"A": 3, None: 3}


def test_a_task_derives_the_key_from_the_args(keyed_app: Conveyor) -> None:
    app = keyed_app
    job = app.enqueue("tenant_job", {"tenant": "acme"})
    assert job.group_key == "tenant:acme" and app.require_job(job.id).group_key == "tenant:acme"
    many = app.enqueue_many("tenant_job", [{"tenant": "a"}, {"tenant": "b"}])
    assert [j.group_key for j in many] == ["tenant:a", "tenant:b"]
    assert [app.require_job(j.id).group_key for j in many] == ["tenant:a", "tenant:b"]
    given = app.enqueue("tenant_job", {"tenant": "a"}, group_key="override")
    assert app.require_job(given.id).group_key == "override"
    batch = app.enqueue_batch([{"type": "tenant_job", "args": {"tenant": "z"}}])
    assert app.require_job(batch[0].id).group_key == "tenant:z"


# ------------------------------------------------------------------------------------------------ limits
def test_group_concurrency_holds_per_key_and_frees_on_completion(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.set_queue("default", group_concurrency=2)
    app.enqueue_many("noop", [{"i": i} for i in range(10)], group_key="A")
    app.enqueue_many("noop", [{"i": i} for i in range(10)], group_key="B")
    first = claim(app, 10)
    assert Counter(keys_of(app, first)) == {"A": 2, "B": 2}
    assert claim(app, 10).jobs == []  # every key at its limit
    a_jobs = [j for j in first.jobs if app.require_job(j.id).group_key == "A"]
    app.backend.finish_jobs([Completed(a_jobs[0].id, a_jobs[0].lease, None)], app.clock())
    assert keys_of(app, claim(app, 10)) == ["A"]
    groups, total = app.list_groups("default")
    assert total == 2 and {g.key: (g.running, g.ready, g.concurrency) for g in groups} == {
        "A": (2, 7, 2), "B": (2, 8, 2)}


def test_a_key_overrides_the_queue_limit(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.set_queue("default", group_concurrency=3)
    app.set_group("default", "A", concurrency=1)
    app.enqueue_many("noop", [{"i": i} for i in range(5)], group_key="A")
    app.enqueue_many("noop", [{"i": i} for i in range(5)], group_key="B")
    assert Counter(keys_of(app, claim(app, 10))) == {"A": 1, "B": 3}
    a = app.get_group("default", "A")
    assert (a.concurrency, a.concurrency_override, a.running) == (1, True, 1)
    app.set_group("default", "A", concurrency=None)  # back to the queue's limit
    assert Counter(keys_of(app, claim(app, 10))) == {"A": 2}


def test_group_rate_limit_counts_starts_per_key(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.set_queue("default", group_rate_limit=2)
    app.enqueue_many("noop", [{"i": i} for i in range(10)], group_key="A")
    app.enqueue_many("noop", [{"i": i} for i in range(10)], group_key="B")
    now = app.clock()
    assert Counter(keys_of(app, claim(app, 10, now=now))) == {"A": 2, "B": 2}
    assert claim(app, 10, now=now + 0.5).jobs == []  # the same one-second window
    assert Counter(keys_of(app, claim(app, 10, now=now + 1.01))) == {"A": 2, "B": 2}


def test_a_dead_workers_slot_frees_when_its_lease_ends(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.set_queue("default", group_concurrency=1)
    app.enqueue_many("noop", [{"i": i} for i in range(3)], group_key="A")
    now = app.clock()
    held = claim(app, 5, now=now, lease_s=1.0, worker="dead")
    assert len(held.jobs) == 1 and claim(app, 5, now=now).jobs == []
    assert app.backend.rescue_expired(now + 2.0) == 1  # the lease ended: the job is ready again
    again = claim(app, 5, now=now + 2.0)
    assert len(again.jobs) == 1


def test_keyed_jobs_are_not_claimed_ahead_of_a_free_slot(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.enqueue_many("noop", [{"i": i} for i in range(10)], group_key="A")
    app.enqueue_many("noop", [{"i": i} for i in range(10)])
    got = claim(app, 10, free=3)
    assert Counter(keys_of(app, got)) == {"A": 3, None: 7}  # jobs without a key fill the claim ahead
    assert got.keyed_left


def test_queues_without_keys_keep_the_one_statement_claim(keyed_app: Conveyor) -> None:
    app = keyed_app
    app.enqueue_many("noop", [{"i": i} for i in range(5)], queue="plain")
    app.enqueue_many("noop", [{"i": i} for i in range(5)], queue="keyed", group_key="A")
    queues = {q.name: q for q in app.list_queues()}
    assert "plain" not in app.backend.driver.read(lambda tx: [r[0] for r in tx.rows("limited_queues")])
    assert "keyed" in app.backend.driver.read(lambda tx: [r[0] for r in tx.rows("limited_queues")])
    assert queues["plain"].counts["pending"] == 5
    assert len(claim(app, 20, free=20).jobs) == 10


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("key", ["x" * 1000, "", "   ", "a\x00b"])
def test_a_bad_group_key_is_refused_and_nothing_stored(keyed_app: Conveyor, key: str) -> None:
    with pytest.raises(InvalidArgumentsError, match="group_key"):
        keyed_app.enqueue("noop", {}, group_key=key)
    with pytest.raises(InvalidArgumentsError, match="group_key"):
        keyed_app.enqueue_many("noop", [{}, {}], group_key=key)
    assert keyed_app.list_jobs().jobs == []


def test_a_key_function_that_fails_refuses_the_enqueue(keyed_app: Conveyor) -> None:
    @keyed_app.task(name="bad_key", group_key=lambda args: args["missing"])
    def bad_key() -> None: ...

    with pytest.raises(InvalidArgumentsError, match="bad_key: group_key failed: KeyError"):
        keyed_app.enqueue("bad_key", {})
    with pytest.raises(ConfigError, match="group_key"):
        keyed_app.task(name="blank_key", group_key=" ")(lambda: None)
    assert keyed_app.list_jobs().jobs == []


@pytest.mark.parametrize("change", [{"group_concurrency": 0}, {"group_concurrency": -1},
                                    {"group_concurrency": 1.5}, {"group_rate_limit": "abc"},
                                    {"group_rate_limit": 0}, {"group_rate_limit": float("nan")}])
def test_bad_group_limits_are_refused(keyed_app: Conveyor, change: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentsError, match=next(iter(change))):
        keyed_app.set_queue("default", **change)
    info = next(q for q in keyed_app.list_queues() if q.name == "default")
    assert (info.group_concurrency, info.group_rate_limit) == (None, None)


def test_a_job_reports_its_key(keyed_app: Conveyor) -> None:
    job = keyed_app.enqueue("noop", {}, group_key="K")
    assert job.to_dict()["group_key"] == "K"
    assert keyed_app.require_job(job.id).status is JobStatus.PENDING


TURNS = ("SELECT group_key FROM conveyor_groups WHERE queue = 'default' AND ready > 0 "
         "ORDER BY served_at, group_key LIMIT 50")


def test_the_turns_are_an_index_range_not_a_scan(keyed_app: Conveyor) -> None:
    """100,000 keys in one queue: a claim reads the first keys in turn order from an index, and claims fairly."""
    app = keyed_app
    app.enqueue_batch([{"type": "noop", "args": {"i": i}, "group_key": f"k{i:06}"} for i in range(100_000)])
    if app.database_url.startswith("sqlite"):
        with sqlite3.connect(app.database_url.removeprefix("sqlite:///")) as conn:
            conn.execute("ANALYZE")
            plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + TURNS))
        assert "conveyor_groups_turns" in plan and "TEMP B-TREE" not in plan, plan
    else:
        import psycopg

        with psycopg.connect(app.database_url, autocommit=True) as conn:
            conn.execute("ANALYZE conveyor_groups")
            plan = " ".join(r[0] for r in conn.execute("EXPLAIN " + TURNS))
        assert "conveyor_groups_turns" in plan and "Sort" not in plan, plan
    first = claim(app, 50)
    assert len({app.require_job(j.id).group_key for j in first.jobs}) == 50  # fifty keys, one job each
