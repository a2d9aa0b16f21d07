"""The storage interface: job operations, each taking one small params object, grouped by noun.

A backend knows nothing of HTTP, the CLI or task code. It is synchronous and thread-safe; the worker calls it from
a dedicated thread. Times are UTC epoch seconds (`now` is always passed in, so tests control the clock).
"""

from __future__ import annotations

import abc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.ids import uuid7_many
from conveyor.job import Job, JobEvent, JobPage, JobStatus, QueueInfo, WorkerInfo, iso, to_datetime


# ----------------------------------------------------------------------------------------------------- params
@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert; `args`, `tags` and `metadata` are already validated and JSON-ready."""

    id: str
    type: str
    queue: str
    priority: int
    args: dict[str, Any]
    max_retries: int
    timeout: float | None
    run_at: float
    tags: list[str]
    metadata: dict[str, Any]
    unique_key: str | None
    scheduled: bool

    def batch(self, payloads: Sequence[dict[str, Any]]) -> list[NewJob]:
        """One job per payload, each with this template's options and a new id (in increasing order)."""
        ids = uuid7_many(len(payloads))
        return [self.with_payload(job_id, args) for job_id, args in zip(ids, payloads, strict=True)]

    def with_payload(self, job_id: str, args: dict[str, Any]) -> NewJob:
        """This job's options for another job: `self` as the template of a batch."""
        return NewJob(job_id, self.type, self.queue, self.priority, args, self.max_retries, self.timeout, self.run_at,
                      self.tags, self.metadata, self.unique_key, self.scheduled)

    def as_job(self, now: datetime, job_id: str | None = None, args: dict[str, Any] | None = None) -> Job:
        """The job as it is right after its insert at `now` (so a backend need not read it back); with `job_id` and
        `args`, the job of that id and args that `self` is the template of. Positional, in Job's field order: a batch
        enqueue builds thousands, and keywords cost a frozen dataclass's init 40 % more."""
        run_at = datetime.fromtimestamp(self.run_at, UTC) if self.scheduled else now
        status = JobStatus.SCHEDULED if self.scheduled else JobStatus.PENDING
        return Job(
            # id, type, queue, status, priority, args, result, error, error_detail, progress, progress_info
            job_id or self.id, self.type, self.queue, status, self.priority, self.args if args is None else args,
            None, None, None, 0, None,
            # attempts, max_retries, timeout, run_at, tags, metadata, unique_key
            0, self.max_retries, self.timeout, run_at, self.tags, self.metadata, self.unique_key,
            # created_at, updated_at, started_at, completed_at, worker_id, cancel_requested
            now, now, None, None, None, False,
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that a worker holds a job: the claim's worker and attempt number."""

    worker_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """What a worker needs to run a job it claimed."""

    id: str
    type: str
    queue: str
    priority: int
    args: dict[str, Any]
    attempt: int
    retries_used: int
    max_retries: int
    timeout: float | None
    lease: Lease

    @property
    def retries_left(self) -> int:
        return self.max_retries - self.retries_used


@dataclass(frozen=True, slots=True)
class ClaimParams:
    worker_id: str
    limit: int
    now: float
    lease_until: float
    queues: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None  # only jobs of these types (HTTP workers in other languages); None: any


@dataclass(frozen=True, slots=True)
class ClaimResult:
    jobs: list[ClaimedJob]
    next_run_at: float | None = None  # earliest scheduled job in the worker's queues, to wake up for it


# Outcomes of one attempt, written by `finish_jobs`.
@dataclass(frozen=True, slots=True)
class Completed:
    job_id: str
    lease: Lease
    result: Any


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: str
    lease: Lease
    error: str
    detail: str | None = None
    retry_at: float | None = None  # None: no retry, whatever the budget says


@dataclass(frozen=True, slots=True)
class Cancelled:
    job_id: str
    lease: Lease
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    """Handed back unfinished (worker shutdown): pending again, the attempt does not use up a retry."""

    job_id: str
    lease: Lease
    reason: str = "released by worker shutdown"


Outcome = Completed | Failed | Cancelled | Released


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    job_id: str
    lease: Lease
    progress: int
    info: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class JobFilter:
    statuses: tuple[JobStatus, ...] | None = None
    type: str | None = None
    queue: str | None = None
    tag: str | None = None
    older_than: float | None = None  # epoch seconds: created (or finished, for terminal jobs) before this
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class QueueChange:
    name: str
    paused: bool | None = None
    concurrency: int | None = None
    rate_limit: float | None = None
    clear_concurrency: bool = False
    clear_rate_limit: bool = False


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    slots: int
    started_at: float
    now: float
    lease_until: float
    # The jobs the worker knows it holds (running, or finished with the outcome not yet written). A backend renews
    # only these when given, so a job claimed by a call whose answer never arrived (the connection broke at commit)
    # is not kept alive by heartbeats forever: its lease runs out and it is rescued. None: renew all of the worker's.
    holding: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class JobChange:
    """One entry of the change outbox: a job was created, changed state, or reported progress.
    `id` increases across the whole system; readers load the job itself when they need it."""

    id: int
    job_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Stats:
    counts: dict[str, int]
    counts_by_type: dict[str, dict[str, int]]
    durations: dict[str, dict[str, float]]
    throughput: list[dict[str, Any]]
    workers: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls,
        by_type_rows: Sequence[tuple[str, str, int]],
        duration_rows: Sequence[tuple[str, float, int]],
        minute_rows: Sequence[tuple[int, str, int]],
        workers: int,
        since: float,
        window_s: float,
    ) -> Stats:
        """Assemble the figures from what every backend's stats queries return: (type, status, count) rows,
        (type, duration, minute) rows of the window's completed jobs, and (minute, status, count) rows."""
        by_type: dict[str, dict[str, int]] = {}
        for type_, status, n in by_type_rows:
            by_type.setdefault(type_, {})[status] = n
        samples: dict[str, list[float]] = {}
        by_minute: dict[int, list[float]] = {}
        for type_, duration, minute in duration_rows:
            samples.setdefault(type_, []).append(duration)
            by_minute.setdefault(minute, []).append(duration)
        return cls(
            counts={s.value: sum(c.get(s.value, 0) for c in by_type.values()) for s in JobStatus},
            counts_by_type=by_type,
            durations={t: _summary(v) for t, v in samples.items()},
            throughput=_per_minute(minute_rows, since, window_s),
            workers=int(workers),
            extra={"duration_series": _duration_series(by_minute, since, window_s)},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "counts_by_type": self.counts_by_type,
            "durations": self.durations,
            "throughput": self.throughput,
            "workers": self.workers,
            **self.extra,
        }


# ---------------------------------------------------------------------------------------------------- backend
class Backend(abc.ABC):
    """Durable storage of jobs, their history, queue settings and live workers."""

    dialect: str

    # lifecycle
    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; safe to call from several processes at once."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # jobs: producing
    @abc.abstractmethod
    def insert_jobs(self, jobs: Sequence[NewJob], now: float, connection: Any = None) -> list[Job]:
        """Insert in one transaction. A job whose `unique_key` matches an open job yields that job instead.
        `connection`: the caller's own database connection or transaction to write in (PostgreSQL only)."""

    def insert_many(
        self, template: NewJob, payloads: Sequence[dict[str, Any]], now: float, connection: Any = None
    ) -> list[Job]:
        """Insert one job per payload, each with `template`'s options (its id and args are not used), in one
        transaction like `insert_jobs`. A backend may stream them in as it makes them."""
        return self.insert_jobs(template.batch(payloads), now, connection=connection)

    # jobs: reading
    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    def list_jobs(self, params: JobFilter) -> JobPage: ...

    @abc.abstractmethod
    def job_events(self, job_id: str) -> list[JobEvent]: ...

    # jobs: working
    @abc.abstractmethod
    def claim_jobs(self, params: ClaimParams) -> ClaimResult:
        """Promote due scheduled jobs, then claim up to `limit` ready jobs in priority order, honouring queue
        settings (paused, concurrency, rate limit). Each claimed job's `attempts` goes up by one."""

    @abc.abstractmethod
    def finish_jobs(self, outcomes: Sequence[Outcome], now: float) -> list[str]:
        """Write outcomes in one transaction, each guarded by its lease; returns the ids whose lease was lost."""

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult]:
        """A worker's cycle: write progress and outcomes, then claim again when `claim` is given. A backend may do
        it all in one transaction; this default makes separate calls. Returns the lost ids and the claim."""
        if progress:
            self.write_progress(progress, now)
        lost = self.finish_jobs(outcomes, now) if outcomes else []
        return lost, self.claim_jobs(claim) if claim is not None else ClaimResult([])

    async def finish_and_claim_async(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult] | None:
        """`finish_and_claim` on the running event loop, for a backend with an asyncio driver: no hop to a thread
        and back for each cycle. None when this backend (or this cycle) has no such path: the caller then runs
        `finish_and_claim` in its database thread."""
        return None

    async def close_async(self) -> None:
        """Close what `finish_and_claim_async` opened for the running event loop (a worker calls it as it stops)."""
        return None

    @abc.abstractmethod
    def write_progress(self, updates: Sequence[ProgressUpdate], now: float) -> None: ...

    @abc.abstractmethod
    def heartbeat(self, beat: WorkerBeat) -> list[str]:
        """Record the worker alive, renew its leases; returns ids of its jobs whose cancellation was requested."""

    @abc.abstractmethod
    def cancel_requests(self, worker_id: str) -> list[str]:
        """Ids of the worker's running jobs whose cancellation was requested."""

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    def rescue_expired(self, now: float) -> int:
        """Jobs whose lease expired go back to pending (a failed attempt), or end failed when out of attempts."""

    @abc.abstractmethod
    def prune(self, finished_before: float, now: float) -> int:
        """Delete finished jobs (and their history) finished before the cutoff; forget dead workers."""

    # jobs: steering
    @abc.abstractmethod
    def cancel_job(self, job_id: str, now: float, message: str = "cancelled") -> Job:
        """Cancel a waiting job at once, or request cancellation of a running one."""

    @abc.abstractmethod
    def retry_job(self, job_id: str, now: float) -> Job: ...

    @abc.abstractmethod
    def delete_job(self, job_id: str) -> None: ...

    @abc.abstractmethod
    def select_ids(self, params: JobFilter) -> list[str]:
        """All ids matching the filter (no paging), for bulk actions."""

    @abc.abstractmethod
    def purge_jobs(self, statuses: Sequence[JobStatus], finished_before: float) -> int: ...

    # queues
    @abc.abstractmethod
    def list_queues(self) -> list[QueueInfo]: ...

    @abc.abstractmethod
    def set_queue(self, change: QueueChange, now: float) -> QueueInfo: ...

    # workers and stats
    @abc.abstractmethod
    def list_workers(self, now: float) -> list[WorkerInfo]: ...

    @abc.abstractmethod
    def stats(self, now: float, window_s: float = 3600.0) -> Stats: ...

    @abc.abstractmethod
    def has_ready_jobs(self, queues: tuple[str, ...] | None, now: float) -> bool:
        """Whether any job is pending, or scheduled and due, in these queues (None: all)."""

    # the change outbox, for live events (SSE) across processes
    @abc.abstractmethod
    def changes_since(self, after_id: int, limit: int = 1000) -> list[JobChange]:
        """Changes recorded after `after_id`, oldest first."""

    @abc.abstractmethod
    def last_change_id(self) -> int:
        """The id of the newest change (0 if none)."""

    @abc.abstractmethod
    def prune_changes(self, before: float) -> int:
        """Forget changes recorded before this time (the outbox keeps at least the last hour)."""

    # change detection, for idle workers
    @abc.abstractmethod
    def change_token(self) -> int:
        """A number that changes whenever any process commits a write; cheap enough to poll every few ms."""

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Have `callback` called (from any thread) when `wake_token` may have changed, so an idle worker wakes at
        once rather than at its next poll. Returns a function that unsubscribes; None: not supported, poll."""
        return None

    def wake_token(self) -> int:
        """For idle workers: a number that changes when jobs may have become ready (by default `change_token`; a
        backend that can tell such changes from the rest, like PostgreSQL, wakes workers only for those)."""
        return self.change_token()


# ------------------------------------------------------------------------------------------------ stats helpers
def _duration_series(by_minute: dict[int, list[float]], since: float, window_s: float) -> list[dict[str, Any]]:
    """Per minute of the window: how many jobs completed and their duration summary (seconds; null if none)."""
    series: list[dict[str, Any]] = []
    for i in range(int(window_s // 60)):
        values = by_minute.get(i)
        summary = _summary(values) if values else {"count": 0, "avg": None, "p50": None, "p95": None}
        series.append({"minute": iso(to_datetime(since + 60 * i)), **summary})
    return series


def _summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if len(values) == 1:
        return {"count": 1, "avg": values[0], "p50": values[0], "p95": values[0]}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "avg": statistics.fmean(values), "p50": q[49], "p95": q[94]}


def _per_minute(rows: Sequence[tuple[int, str, int]], since: float, window_s: float) -> list[dict[str, Any]]:
    buckets: list[dict[str, Any]] = [
        {"minute": datetime.fromtimestamp(since + 60 * i, UTC).isoformat(), "completed": 0, "failed": 0}
        for i in range(int(window_s // 60))
    ]
    for minute, status, n in rows:
        if 0 <= minute < len(buckets):
            buckets[minute][status] = n
    return buckets
