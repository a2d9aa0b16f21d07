"""The small values the backend interface takes and returns: jobs to insert, claims, outcomes, filters, beats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.ids import uuid7_many
from conveyor.job import Job, JobStatus


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
    group_key: str | None = None
    depends_on: tuple[str, ...] = ()  # parents' ids: the job starts `waiting` (SPEC section 7)
    workflow_id: str | None = None
    step: str | None = None
    webhook_url: str | None = None  # this job's terminal event goes there (webhooks)

    def batch(self, payloads: Sequence[dict[str, Any]]) -> list[NewJob]:
        """One job per payload, each with this template's options and a new id (in increasing order)."""
        ids = uuid7_many(len(payloads))
        return [self.with_payload(job_id, args) for job_id, args in zip(ids, payloads, strict=True)]

    def with_payload(self, job_id: str, args: dict[str, Any]) -> NewJob:
        """This job's options for another job: `self` as the template of a batch."""
        return NewJob(job_id, self.type, self.queue, self.priority, args, self.max_retries, self.timeout, self.run_at,
                      self.tags, self.metadata, self.unique_key, self.scheduled, self.group_key,
                      self.depends_on, self.workflow_id, self.step, self.webhook_url)

    def with_group_key(self, group_key: str | None) -> NewJob:
        return NewJob(self.id, self.type, self.queue, self.priority, self.args, self.max_retries, self.timeout,
                      self.run_at, self.tags, self.metadata, self.unique_key, self.scheduled, group_key,
                      self.depends_on, self.workflow_id, self.step, self.webhook_url)

    def as_jobs(self, now: datetime, ids: Sequence[str], payloads: Sequence[dict[str, Any]]) -> list[Job]:
        """The jobs of a batch that `self` is the template of, as they are right after their insert at `now`."""
        return self.as_job(now).copies(ids, payloads) if ids else []

    def as_job(self, now: datetime) -> Job:
        """The job as it is right after its insert at `now` (so a backend need not read it back). Positional, in
        Job's field order: keywords cost a frozen dataclass's init 40 % more."""
        run_at = datetime.fromtimestamp(self.run_at, UTC) if self.scheduled else now
        status = JobStatus.SCHEDULED if self.scheduled else JobStatus.PENDING
        return Job(
            # id, type, queue, status, priority, args, result, error, error_detail, progress, progress_info
            self.id, self.type, self.queue, status, self.priority, self.args,
            None, None, None, 0, None,
            # attempts, max_retries, timeout, run_at, tags, metadata, unique_key
            0, self.max_retries, self.timeout, run_at, self.tags, self.metadata, self.unique_key,
            # created_at, updated_at, started_at, completed_at, worker_id, cancel_requested, group_key
            now, now, None, None, None, False, self.group_key,
            # depends_on, workflow_id, step (a job with parents is inserted by insert_graph), webhook_url
            [], None, None, self.webhook_url,
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
    free: int | None = None  # slots free now (the rest of `limit` is claimed ahead): keyed jobs take only these


@dataclass(frozen=True, slots=True)
class ClaimResult:
    jobs: list[ClaimedJob]
    next_run_at: float | None = None  # earliest scheduled job in the worker's queues, to wake up for it
    keyed_left: bool = False  # keyed jobs were left (no free slot, or a key at its limit): claim with the next outcome


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
    group_concurrency: int | None = None
    group_rate_limit: float | None = None
    clear_group_concurrency: bool = False
    clear_group_rate_limit: bool = False


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
    types: tuple[str, ...] | None = None  # the task types the worker runs (None: any)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task's effective defaults, registered so that other paths (the SQL API) give its jobs the same options."""

    name: str
    queue: str
    priority: int
    max_retries: int
    timeout: float | None


@dataclass(frozen=True, slots=True)
class JobChange:
    """One entry of the change outbox: a job was created, changed state, or reported progress.
    `id` increases across the whole system; readers load the job itself when they need it."""

    id: int
    job_id: str
    at: float


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    id: str
    name: str
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """A workflow as stored: its counters and status (the triggers keep them), without its steps."""

    id: str
    name: str
    status: str
    metadata: dict[str, Any]
    steps_total: int
    steps_done: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
