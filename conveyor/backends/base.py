"""The storage interface: job operations, each taking one small params object, grouped by noun.

A backend knows nothing of HTTP, the CLI or task code. It is synchronous and thread-safe; the worker calls it from
a dedicated thread. Times are UTC epoch seconds (`now` is always passed in, so tests control the clock). The params
and outcome values live in `params.py`, the stats figures in `stats.py`; both are re-exported here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.backends.params import (
    Cancelled,
    ClaimedJob,
    ClaimParams,
    ClaimResult,
    Completed,
    Failed,
    JobChange,
    JobFilter,
    Lease,
    NewJob,
    NewWorkflow,
    Outcome,
    ProgressUpdate,
    QueueChange,
    Released,
    TaskInfo,
    WorkerBeat,
    WorkflowRow,
)
from conveyor.backends.stats import Stats
from conveyor.job import GroupInfo, Job, JobEvent, JobPage, JobStatus, QueueInfo, WorkerInfo

__all__ = [
    "Backend",
    "Cancelled",
    "ClaimParams",
    "ClaimResult",
    "ClaimedJob",
    "Completed",
    "Failed",
    "JobChange",
    "JobFilter",
    "Lease",
    "NewJob",
    "Outcome",
    "ProgressUpdate",
    "QueueChange",
    "Released",
    "Stats",
    "TaskInfo",
    "WorkerBeat",
]


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

    # dependencies and workflows (SPEC section 7; conveyor/backends/deps.py)
    @abc.abstractmethod
    def insert_graph(
        self, jobs: Sequence[NewJob], now: float, workflow: NewWorkflow | None = None, connection: Any = None
    ) -> list[Job]:
        """Insert jobs with `depends_on` (parents in the batch or stored) and, given, their workflow, in one
        transaction; an unknown parent refuses the whole batch (InvalidArgumentsError)."""

    @abc.abstractmethod
    def extend_workflow(
        self, workflow_id: str, jobs: Sequence[NewJob], before: Sequence[str], now: float
    ) -> list[Job]:
        """Add steps to a running workflow in one transaction; the steps named in `before` (waiting) wait for them
        too. Parents outside the batch must be steps of it that are ready, running or completed."""

    @abc.abstractmethod
    def parent_results(self, job_id: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def get_workflow(self, workflow_id: str) -> tuple[WorkflowRow, list[Job]] | None: ...

    @abc.abstractmethod
    def workflow_step_ids(self, workflow_id: str, names: Sequence[str]) -> dict[str, str]:
        """The job ids of the workflow's steps of those names (name -> id; names it has not are left out)."""

    @abc.abstractmethod
    def list_workflows(
        self, status: Sequence[str] | None = None, name: str | None = None, limit: int = 50
    ) -> list[WorkflowRow]: ...

    @abc.abstractmethod
    def count_workflows(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def cancel_workflow(self, workflow_id: str, now: float) -> None: ...

    @abc.abstractmethod
    def retry_workflow(self, workflow_id: str, now: float) -> None: ...

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
    def register_tasks(self, tasks: Sequence[TaskInfo], now: float) -> None:
        """Record the tasks' effective defaults (a worker does at start), for paths that enqueue without Python."""

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

    # fair limits per key
    @abc.abstractmethod
    def list_groups(self, queue: str, limit: int = 100, key: str | None = None) -> tuple[list[GroupInfo], int]:
        """The keys of `queue`, busiest first (running, then ready), at most `limit`, and how many it has."""

    @abc.abstractmethod
    def set_group(self, queue: str, key: str, concurrency: int | None, rate_limit: float | None, now: float) -> None:
        """Set one key's overrides of its queue's group limits (None: the queue's)."""

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


