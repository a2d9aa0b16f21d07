"""The SQLite backend on a real file: claims, lease guards, rescue, events, the change outbox, queue limits."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import (
    Cancelled,
    ClaimedJob,
    ClaimParams,
    Completed,
    Failed,
    JobFilter,
    Lease,
    NewJob,
    ProgressUpdate,
    QueueChange,
    Released,
    WorkerBeat,
)
from conveyor.backends.queries import load_queries, parse_queries
from conveyor.backends.sqlite import SQLiteBackend, sqlite_path
from conveyor.errors import ConfigError, InvalidArgumentsError, InvalidStateError, JobNotFoundError
from conveyor.ids import uuid7
from conveyor.job import JobStatus

T0 = 1_800_000_000.0  # a fixed "now": every call takes the time as a parameter
LEASE = 30.0


@pytest.fixture
def backend(sqlite_url: str) -> Iterator[SQLiteBackend]:
    b = open_backend(sqlite_url)
    assert isinstance(b, SQLiteBackend)
    yield b
    b.close()


def new_job(
    type_: str = "t",
    *,
    queue: str = "default",
    priority: int = 0,
    args: dict[str, Any] | None = None,
    max_retries: int = 3,
    run_at: float = T0,
    now: float = T0,
    unique_key: str | None = None,
    tags: list[str] | None = None,
) -> NewJob:
    return NewJob(
        id=uuid7(),
        type=type_,
        queue=queue,
        priority=priority,
        args=args or {},
        max_retries=max_retries,
        timeout=None,
        run_at=run_at,
        tags=tags or [],
        metadata={},
        unique_key=unique_key,
        scheduled=run_at > now,
    )


def insert(backend: SQLiteBackend, *jobs: NewJob, now: float = T0) -> list[str]:
    return [j.id for j in backend.insert_jobs(list(jobs), now)]


def claim(
    backend: SQLiteBackend, limit: int = 1, now: float = T0, worker: str = "w1", queues: tuple[str, ...] | None = None
) -> list[ClaimedJob]:
    return backend.claim_jobs(ClaimParams(worker, limit, now, now + LEASE, queues)).jobs


def status(backend: SQLiteBackend, job_id: str) -> JobStatus:
    job = backend.get_job(job_id)
    assert job is not None
    return job.status


def transitions(backend: SQLiteBackend, job_id: str) -> list[tuple[str | None, str]]:
    return [(e.from_status, e.to_status) for e in backend.job_events(job_id)]


# ---------------------------------------------------------------------------------------------- sql files
def test_every_query_parses_and_runs_against_the_schema(backend: SQLiteBackend) -> None:
    queries = load_queries("sqlite")
    expected = {"claim_jobs", "complete_jobs", "fail_jobs", "rescue_expired", "release_jobs", "changes_since"}
    assert expected <= set(queries)
    for sql in queries.values():
        # EXPLAIN compiles the statement: a typo, a missing column or table fails here
        params = {p: None for p in _param_names(sql)}
        backend.driver._conn.execute(f"EXPLAIN {sql}", params)


def _param_names(sql: str) -> set[str]:
    import re

    return set(re.findall(r":(\w+)", sql))


def test_query_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///rel.db") == "rel.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    with pytest.raises(ConfigError):
        sqlite_path("sqlite://")
    with pytest.raises(ConfigError):
        open_backend("nosuch://x")
    with pytest.raises(ConfigError, match="does not exist"):
        open_backend("sqlite:////no/such/dir/x.db")


def test_wal_mode_and_reopen_keeps_jobs(sqlite_url: str) -> None:
    b = SQLiteBackend(sqlite_url)
    (job_id,) = insert(b, new_job())
    assert b.driver._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    b.close()
    again = SQLiteBackend(sqlite_url)  # migrate() again is harmless
    try:
        assert status(again, job_id) is JobStatus.PENDING
    finally:
        again.close()


def test_a_newer_schema_is_refused(sqlite_url: str, backend: SQLiteBackend) -> None:
    backend.driver._conn.execute("INSERT INTO conveyor_schema (version) VALUES (99)")
    with pytest.raises(ConfigError, match="newer"):
        SQLiteBackend(sqlite_url)


# ---------------------------------------------------------------------------------------------- claims
def test_claims_in_priority_then_run_at_then_enqueue_order(backend: SQLiteBackend) -> None:
    low = insert(backend, new_job(priority=-1))
    a, b = insert(backend, new_job(priority=0), new_job(priority=0))
    high = insert(backend, new_job(priority=10))
    early = insert(backend, new_job(priority=0, run_at=T0 - 100))  # enqueued last, but an earlier run_at
    order = [claim(backend)[0].id for _ in range(5)]
    assert order == [*high, *early, a, b, *low]
    assert claim(backend) == []


def test_batch_claim_takes_several_in_order_and_counts_attempts(backend: SQLiteBackend) -> None:
    ids = insert(backend, *(new_job(priority=i % 3) for i in range(10)))
    got = claim(backend, limit=4, worker="w9")
    assert len(got) == 4
    assert [j.priority for j in got] == [2, 2, 2, 1]
    assert all(j.attempt == 1 and j.lease == Lease("w9", 1) and j.retries_used == 0 for j in got)
    for j in got:
        job = backend.get_job(j.id)
        assert job is not None
        assert (job.status, job.attempts, job.worker_id) == (JobStatus.PROCESSING, 1, "w9")
        assert job.started_at is not None and job.started_at.timestamp() == T0
    assert len(claim(backend, limit=100)) == 6
    processing = backend.list_jobs(JobFilter(statuses=(JobStatus.PROCESSING,), limit=100)).jobs
    assert set(ids) == {j.id for j in processing}


def test_two_connections_never_claim_the_same_job(sqlite_url: str, backend: SQLiteBackend) -> None:
    insert(backend, *(new_job() for _ in range(300)))
    others = [SQLiteBackend(sqlite_url) for _ in range(3)]
    claimed: list[list[str]] = [[] for _ in others]

    def grab(i: int) -> None:
        while got := claim(others[i], limit=7, worker=f"w{i}"):
            claimed[i].extend(j.id for j in got)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(len(others))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in others:
        o.close()
    every = [j for c in claimed for j in c]
    assert len(every) == 300 and len(set(every)) == 300


def test_scheduled_jobs_are_promoted_when_due(backend: SQLiteBackend) -> None:
    (later,) = insert(backend, new_job(run_at=T0 + 60))
    assert status(backend, later) is JobStatus.SCHEDULED
    result = backend.claim_jobs(ClaimParams("w", 5, T0, T0 + LEASE))
    assert result.jobs == [] and result.next_run_at == T0 + 60
    assert not backend.has_ready_jobs(None, T0)
    assert backend.has_ready_jobs(None, T0 + 60)
    (job,) = claim(backend, now=T0 + 61)
    assert job.id == later
    assert transitions(backend, later) == [(None, "scheduled"), ("scheduled", "pending"), ("pending", "processing")]


def test_claim_only_from_the_workers_queues(backend: SQLiteBackend) -> None:
    (a,) = insert(backend, new_job(queue="a"))
    (b,) = insert(backend, new_job(queue="b", priority=5))
    assert [j.id for j in claim(backend, limit=5, queues=("a",))] == [a]
    assert [j.id for j in claim(backend, limit=5, queues=("a", "c"))] == []
    assert backend.has_ready_jobs(("b",), T0) and not backend.has_ready_jobs(("a",), T0)
    assert [j.id for j in claim(backend, limit=5)] == [b]


def test_paused_queue_is_not_claimed(backend: SQLiteBackend) -> None:
    (job,) = insert(backend, new_job(queue="q"))
    backend.set_queue(QueueChange("q", paused=True), T0)
    assert claim(backend, limit=5) == []
    assert not backend.has_ready_jobs(None, T0)
    backend.set_queue(QueueChange("q", paused=False), T0)
    assert [j.id for j in claim(backend, limit=5)] == [job]


def test_queue_concurrency_limits_claims_across_workers(backend: SQLiteBackend) -> None:
    insert(backend, *(new_job(queue="q") for _ in range(5)))
    backend.set_queue(QueueChange("q", concurrency=2), T0)
    assert len(claim(backend, limit=5, worker="w1")) == 2
    assert claim(backend, limit=5, worker="w2") == []
    (done, *_) = backend.list_jobs(JobFilter(statuses=(JobStatus.PROCESSING,))).jobs
    assert backend.finish_jobs([Completed(done.id, Lease(str(done.worker_id), 1), None)], T0) == []
    assert len(claim(backend, limit=5, worker="w2")) == 1
    backend.set_queue(QueueChange("q", clear_concurrency=True), T0)
    assert len(claim(backend, limit=5, worker="w2")) == 2


def test_queue_rate_limit_caps_starts_per_window(backend: SQLiteBackend) -> None:
    insert(backend, *(new_job(queue="q") for _ in range(10)))
    backend.set_queue(QueueChange("q", rate_limit=3.0), T0)
    assert len(claim(backend, limit=10, now=T0)) == 3
    assert claim(backend, limit=10, now=T0 + 0.5) == []
    assert len(claim(backend, limit=10, now=T0 + 1.0)) == 3


# ---------------------------------------------------------------------------------------------- lease guard
def test_a_stale_lease_changes_nothing(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job())
    (job,) = claim(backend, worker="w1")
    before = backend.get_job(job_id)
    stale = [Lease("w2", 1), Lease("w1", 2), Lease("w1", 0)]
    for lease in stale:
        outcomes = [
            Completed(job_id, lease, {"x": 1}),
            Failed(job_id, lease, "err", None, T0 + 5),
            Cancelled(job_id, lease, "stop"),
            Released(job_id, lease),
        ]
        for outcome in outcomes:
            assert backend.finish_jobs([outcome], T0 + 1) == [job_id]
        backend.write_progress([ProgressUpdate(job_id, lease, 50, {"stage": "x"})], T0 + 1)
    assert backend.get_job(job_id) == before
    assert transitions(backend, job_id) == [(None, "pending"), ("pending", "processing")]
    # the rightful holder still can
    assert backend.finish_jobs([Completed(job_id, job.lease, {"ok": True})], T0 + 2) == []
    done = backend.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"ok": True}
    # and a second completion of a finished job is lost, not applied twice
    assert backend.finish_jobs([Completed(job_id, job.lease, {"ok": False})], T0 + 3) == [job_id]
    assert backend.get_job(job_id) == done


def test_a_rescued_job_cannot_be_completed_by_its_old_worker(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job())
    (old,) = claim(backend, worker="w1", now=T0)
    assert backend.rescue_expired(T0 + LEASE + 1) == 1
    (new,) = claim(backend, worker="w1", now=T0 + LEASE + 2)  # even the same worker id: the attempt differs
    assert new.attempt == 2
    assert backend.finish_jobs([Completed(job_id, old.lease, "old")], T0 + LEASE + 3) == [job_id]
    assert backend.finish_jobs([Completed(job_id, new.lease, "new")], T0 + LEASE + 3) == []
    job = backend.get_job(job_id)
    assert job is not None and job.result == "new" and job.attempts == 2


# ---------------------------------------------------------------------------------------------- rescue
def test_rescue_counts_a_failed_attempt_and_ends_failed_when_out_of_attempts(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=1))
    now = T0
    claim(backend, now=now)
    assert backend.rescue_expired(now + LEASE - 1) == 0  # the lease holds
    assert backend.rescue_expired(now + LEASE + 1) == 1
    job = backend.get_job(job_id)
    assert job is not None and job.status is JobStatus.PENDING and job.attempts == 1
    assert job.error is not None and "lease expired" in job.error
    now += 100
    (again,) = claim(backend, now=now)
    assert again.attempt == 2 and again.retries_used == 1 and again.retries_left == 0
    assert backend.rescue_expired(now + LEASE + 1) == 1
    job = backend.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 2
    assert job.completed_at is not None
    assert claim(backend, now=now + 200) == []
    assert transitions(backend, job_id)[-1] == ("processing", "failed")


def test_heartbeat_renews_leases_so_rescue_leaves_them(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job())
    claim(backend, worker="w1", now=T0)
    beat = WorkerBeat("w1", "host", 123, None, 4, T0, T0 + 25, T0 + 25 + LEASE)
    assert backend.heartbeat(beat) == []
    assert backend.rescue_expired(T0 + LEASE + 1) == 0
    assert status(backend, job_id) is JobStatus.PROCESSING
    (worker,) = backend.list_workers(T0 + 30)
    assert (worker.id, worker.pid, worker.slots, worker.running) == ("w1", 123, 4, [job_id])
    assert backend.list_workers(T0 + 25 + LEASE + 1) == []
    backend.remove_worker("w1")
    assert backend.list_workers(T0 + 30) == []


def test_release_returns_the_job_pending_without_using_a_retry(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=0))
    (job,) = claim(backend)
    assert backend.finish_jobs([Released(job_id, job.lease)], T0 + 1) == []
    assert status(backend, job_id) is JobStatus.PENDING
    (again,) = claim(backend, now=T0 + 2)
    assert again.attempt == 2 and again.retries_used == 0 and again.retries_left == 0
    assert backend.finish_jobs([Failed(job_id, again.lease, "x", None, T0 + 10)], T0 + 3) == []
    assert status(backend, job_id) is JobStatus.FAILED  # max_retries=0: no retry, even with retry_at


# ---------------------------------------------------------------------------------------------- outcomes
def test_fail_with_retries_left_schedules_at_retry_at(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=2))
    for attempt in (1, 2):
        (job,) = claim(backend, now=T0 + 100 * attempt)
        assert job.attempt == attempt
        backend.finish_jobs([Failed(job_id, job.lease, f"err {attempt}", "trace", T0 + 100 * attempt + 7)], T0)
        stored = backend.get_job(job_id)
        assert stored is not None and stored.status is JobStatus.SCHEDULED
        assert stored.run_at.timestamp() == T0 + 100 * attempt + 7
        assert stored.error == f"err {attempt}" and stored.error_detail == "trace" and stored.completed_at is None
    (job,) = claim(backend, now=T0 + 300)
    backend.finish_jobs([Failed(job_id, job.lease, "err 3", None, T0 + 400)], T0 + 300)
    stored = backend.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.FAILED and stored.attempts == 3


def test_failed_without_retry_at_ends_failed(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=5))
    (job,) = claim(backend)
    backend.finish_jobs([Failed(job_id, job.lease, "fatal", None, None)], T0 + 1)
    assert status(backend, job_id) is JobStatus.FAILED


def test_a_job_cancelled_while_running_never_ends_completed(backend: SQLiteBackend) -> None:
    ids = insert(backend, new_job(), new_job(), new_job())
    jobs = claim(backend, limit=3, worker="w1")
    for job_id in ids:
        assert backend.cancel_job(job_id, T0 + 1).status is JobStatus.PROCESSING
    assert sorted(backend.cancel_requests("w1")) == sorted(ids)
    by_id = {j.id: j for j in jobs}
    backend.finish_jobs(
        [
            Completed(ids[0], by_id[ids[0]].lease, "done anyway"),
            Failed(ids[1], by_id[ids[1]].lease, "err", None, T0 + 60),
            Released(ids[2], by_id[ids[2]].lease),
        ],
        T0 + 2,
    )
    for job_id in ids:
        job = backend.get_job(job_id)
        assert job is not None and job.status is JobStatus.CANCELLED and job.result is None


def test_progress_is_written_under_the_lease(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job())
    (job,) = claim(backend)
    backend.write_progress([ProgressUpdate(job_id, job.lease, 40, {"stage": "half"})], T0 + 1)
    stored = backend.get_job(job_id)
    assert stored is not None and (stored.progress, stored.progress_info) == (40, {"stage": "half"})


# ---------------------------------------------------------------------------------------------- events and outbox
def test_every_transition_is_an_event(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=1))
    (job,) = claim(backend, worker="w1", now=T0 + 1)
    backend.finish_jobs([Failed(job_id, job.lease, "oops", None, T0 + 5)], T0 + 2)
    (job,) = claim(backend, worker="w2", now=T0 + 6)
    backend.finish_jobs([Completed(job_id, job.lease, 1)], T0 + 7)
    events = backend.job_events(job_id)
    assert [(e.from_status, e.to_status, e.worker_id) for e in events] == [
        (None, "pending", None),
        ("pending", "processing", "w1"),
        ("processing", "scheduled", "w1"),
        ("scheduled", "pending", "w1"),
        ("pending", "processing", "w2"),
        ("processing", "completed", "w2"),
    ]
    assert [e.at.timestamp() for e in events] == [T0, T0 + 1, T0 + 2, T0 + 6, T0 + 6, T0 + 7]
    assert events[2].message == "oops"
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_cancel_and_retry_are_events(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job())
    backend.cancel_job(job_id, T0 + 1)
    backend.retry_job(job_id, T0 + 2)
    assert transitions(backend, job_id) == [(None, "pending"), ("pending", "cancelled"), ("cancelled", "pending")]


def test_outbox_changes_since_in_order_across_jobs(backend: SQLiteBackend) -> None:
    start = backend.last_change_id()
    a, b = insert(backend, new_job(), new_job())
    (ja,) = claim(backend)
    backend.write_progress([ProgressUpdate(a, ja.lease, 10, None)], T0 + 1)
    backend.cancel_job(b, T0 + 2)
    backend.finish_jobs([Completed(a, ja.lease, None)], T0 + 3)
    changes = backend.changes_since(start)
    assert [c.job_id for c in changes] == [a, b, a, a, b, a]  # created, created, claimed, progress, cancel, done
    ids = [c.id for c in changes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert backend.last_change_id() == ids[-1]
    assert backend.changes_since(ids[2]) == changes[3:]
    assert backend.changes_since(start, limit=2) == changes[:2]
    # deleting a job forgets its history but still records a change; ids never go backwards
    backend.delete_job(b)
    tail = backend.changes_since(ids[-1])
    assert [c.job_id for c in tail] == [b] and tail[0].id > ids[-1]
    assert backend.job_events(b) == []


def test_prune_changes_keeps_transitions_and_the_newest_id(backend: SQLiteBackend) -> None:
    (a,) = insert(backend, new_job())
    (ja,) = claim(backend)
    backend.write_progress([ProgressUpdate(a, ja.lease, 10, None)], T0 + 1)
    last = backend.last_change_id()
    assert backend.prune_changes(T0 + 1000) == 0  # the newest row stays, so ids are never reused
    backend.write_progress([ProgressUpdate(a, ja.lease, 20, None)], T0 + 2)
    assert backend.prune_changes(T0 + 1000) == 1
    assert transitions(backend, a) == [(None, "pending"), ("pending", "processing")]
    assert backend.last_change_id() > last


def test_change_token_moves_when_another_connection_writes(sqlite_url: str, backend: SQLiteBackend) -> None:
    other = SQLiteBackend(sqlite_url)
    try:
        token = backend.change_token()
        assert backend.change_token() == token
        insert(other, new_job())
        assert backend.change_token() != token
    finally:
        other.close()


# ---------------------------------------------------------------------------------------------- producing and steering
def test_unique_key_in_one_batch_and_across_calls(backend: SQLiteBackend) -> None:
    first = new_job(unique_key="k")
    jobs = backend.insert_jobs([first, new_job(unique_key="k"), new_job(unique_key="j")], T0)
    assert jobs[0].id == jobs[1].id == first.id and jobs[2].id != first.id
    assert backend.insert_jobs([new_job(unique_key="k")], T0)[0].id == first.id
    rows = backend.driver._conn.execute("SELECT count(*) FROM conveyor_jobs").fetchone()[0]
    assert rows == 2


def test_unique_index_is_enforced_by_the_database(backend: SQLiteBackend) -> None:
    insert(backend, new_job(unique_key="k"))
    with pytest.raises(sqlite3.IntegrityError):
        backend.driver._conn.execute(
            "INSERT INTO conveyor_jobs (id, type, status, max_retries, run_at, unique_key, created_at, updated_at)"
            " VALUES ('x', 't', 'pending', 0, 0, 'k', 0, 0)"
        )


def test_cancel_retry_delete_state_rules(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job())
    with pytest.raises(InvalidStateError):
        backend.retry_job(job_id, T0)
    (job,) = claim(backend)
    with pytest.raises(InvalidStateError):
        backend.delete_job(job_id)
    backend.finish_jobs([Completed(job_id, job.lease, None)], T0)
    with pytest.raises(InvalidStateError):
        backend.cancel_job(job_id, T0)
    backend.delete_job(job_id)
    for op in (backend.cancel_job, backend.retry_job):
        with pytest.raises(JobNotFoundError):
            op(job_id, T0)
    with pytest.raises(JobNotFoundError):
        backend.delete_job(job_id)


def test_purge_and_prune_use_the_finish_time(backend: SQLiteBackend) -> None:
    old, new, waiting = insert(backend, new_job(), new_job(), new_job())
    jobs = {j.id: j for j in claim(backend, limit=2)}
    backend.finish_jobs([Completed(old, jobs[old].lease, None)], T0 + 10)
    backend.finish_jobs([Failed(new, jobs[new].lease, "x", None, None)], T0 + 100)
    assert backend.purge_jobs([JobStatus.COMPLETED, JobStatus.FAILED], T0 + 50) == 1
    assert backend.get_job(old) is None
    assert backend.prune(T0 + 1000, T0 + 1000) == 1
    assert backend.get_job(new) is None and backend.get_job(waiting) is not None


def test_list_jobs_filters_and_a_bad_cursor(backend: SQLiteBackend) -> None:
    (a,) = insert(backend, new_job(type_="x", tags=["t:1", "t:2"]))
    (b,) = insert(backend, new_job(type_="y", queue="other"))
    assert [j.id for j in backend.list_jobs(JobFilter(tag="t:2")).jobs] == [a]
    assert [j.id for j in backend.list_jobs(JobFilter(type="y")).jobs] == [b]
    assert backend.select_ids(JobFilter(queue="other")) == [b]
    assert backend.select_ids(JobFilter()) == [b, a]
    with pytest.raises(InvalidArgumentsError, match="invalid cursor"):
        backend.list_jobs(JobFilter(cursor="not-a-number"))


def test_stats_durations_and_throughput(backend: SQLiteBackend) -> None:
    insert(backend, *(new_job(type_="x") for _ in range(3)))
    jobs = claim(backend, limit=3, now=T0)
    for i, job in enumerate(jobs):
        backend.finish_jobs([Completed(job.id, job.lease, None)], T0 + i + 1)
    stats = backend.stats(T0 + 10)
    assert stats.counts["completed"] == 3 and stats.counts_by_type == {"x": {"completed": 3}}
    assert stats.durations["x"]["count"] == 3 and stats.durations["x"]["p50"] == 2.0
    assert sum(m["completed"] for m in stats.throughput) == 3


def test_memory_database_works_in_one_process() -> None:
    b = SQLiteBackend("sqlite:///:memory:")
    try:
        token = b.change_token()
        (job_id,) = insert(b, new_job())
        assert b.change_token() != token
        assert [j.id for j in claim(b)] == [job_id]
    finally:
        b.close()


def test_priority_order_holds_across_limited_and_unlimited_queues(backend: SQLiteBackend) -> None:
    """A queue with a concurrency limit (or a paused queue anywhere) must not let its low-priority jobs jump ahead
    of higher-priority jobs in other queues."""
    (low,) = insert(backend, new_job(queue="limited", priority=0))
    (high,) = insert(backend, new_job(queue="default", priority=10))
    (mid,) = insert(backend, new_job(queue="limited", priority=5))
    backend.set_queue(QueueChange("limited", concurrency=5), T0)
    assert [j.id for j in claim(backend, limit=1)] == [high]
    assert [j.id for j in claim(backend, limit=1)] == [mid]
    assert [j.id for j in claim(backend, limit=1)] == [low]


def test_priority_order_with_a_rate_limited_queue(backend: SQLiteBackend) -> None:
    (low,) = insert(backend, new_job(queue="metered", priority=-1))
    (high,) = insert(backend, new_job(queue="default", priority=1))
    backend.set_queue(QueueChange("metered", rate_limit=100.0), T0)
    backend.set_queue(QueueChange("elsewhere", paused=True), T0)
    assert [j.id for j in claim(backend, limit=1)] == [high]
    assert [j.id for j in claim(backend, limit=1)] == [low]


def test_a_cancel_requested_on_a_dead_workers_job_ends_cancelled_at_rescue(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=3))
    claim(backend, worker="gone")
    assert backend.cancel_job(job_id, T0 + 1).cancel_requested
    assert backend.rescue_expired(T0 + LEASE + 1) == 1
    job = backend.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED and job.completed_at is not None
    assert claim(backend, now=T0 + 100) == []


def test_retry_clears_a_cancel_request_and_gives_a_fresh_budget(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=0))
    (job,) = claim(backend)
    backend.cancel_job(job_id, T0 + 1)
    backend.finish_jobs([Completed(job_id, job.lease, "x")], T0 + 2)
    assert status(backend, job_id) is JobStatus.CANCELLED
    retried = backend.retry_job(job_id, T0 + 3)
    assert retried.status is JobStatus.PENDING and not retried.cancel_requested and retried.progress == 0
    (again,) = claim(backend, now=T0 + 4)
    assert again.attempt == 2 and again.retries_left == 0
    backend.finish_jobs([Completed(job_id, again.lease, "y")], T0 + 5)
    done = backend.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == "y"


def test_a_rescue_does_not_keep_the_traceback_of_an_older_failure(backend: SQLiteBackend) -> None:
    (job_id,) = insert(backend, new_job(max_retries=3))
    (job,) = claim(backend, now=T0)
    backend.finish_jobs([Failed(job_id, job.lease, "ValueError: x", "Traceback ... ValueError: x", T0 + 1)], T0)
    claim(backend, now=T0 + 2)
    backend.rescue_expired(T0 + 2 + LEASE + 1)
    rescued = backend.get_job(job_id)
    assert rescued is not None and rescued.error is not None and "lease expired" in rescued.error
    assert rescued.error_detail is None


def test_a_claim_that_waited_for_the_writer_lock_starts_its_jobs_when_it_got_it(
    backend: SQLiteBackend, sqlite_url: str
) -> None:
    """SQLite has one writer: a worker's claim can wait while another process's cycle holds the lock, and the jobs it
    then takes start after whatever that cycle took. Their started_at (and lease) count from the claim's `now` plus
    that wait, not from the `now` read before it (the fairness test across processes once saw a claim made after
    all of another key's jobs carry a start before them)."""
    job = backend.insert_jobs([new_job()], T0)[0]
    holder = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    claimed: list[ClaimedJob] = []
    claim = threading.Thread(target=lambda: claimed.extend(
        backend.claim_jobs(ClaimParams("w", 1, T0 + 1, T0 + 1 + LEASE)).jobs))
    claim.start()
    claim.join(0.3)
    assert claim.is_alive()  # waiting for the lock
    holder.execute("COMMIT")
    claim.join(5)
    assert [c.id for c in claimed] == [job.id]
    stored = backend.get_job(job.id)
    assert stored is not None and stored.started_at is not None
    waited = stored.started_at.timestamp() - (T0 + 1)
    assert 0.3 <= waited < 5, waited
    holder.close()
