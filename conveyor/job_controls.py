"""The job controls of `Conveyor`: read jobs (one, a filtered page, its history, waiting for its end) and steer them
(cancel, retry, delete, purge, bulk actions)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from conveyor.backends.base import JobFilter
from conveyor.errors import InvalidArgumentsError, InvalidStateError, JobFailed, JobNotFoundError
from conveyor.job import TERMINAL_STATUSES, Job, JobEvent, JobPage, JobStatus
from conveyor.queues import QueueControls

if TYPE_CHECKING:
    from conveyor.settings import Settings

MAX_LIST_LIMIT = 1000


class JobControls(QueueControls):
    """A mixin of `Conveyor` (its backend, clock and settings)."""

    settings: Settings

    def get_job(self, job_id: str) -> Job | None:
        return self.backend.get_job(str(job_id))

    def require_job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def list_jobs(
        self,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        type: str | None = None,  # noqa: A002 - the SPEC's filter name
        queue: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        return self.backend.list_jobs(self.job_filter(status, type, queue, tag, limit=limit, cursor=cursor))

    @staticmethod
    def job_filter(
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        type: str | None = None,  # noqa: A002
        queue: str | None = None,
        tag: str | None = None,
        *,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobFilter:
        statuses: tuple[JobStatus, ...] | None = None
        if status is not None:
            items = [status] if isinstance(status, str) else list(status)
            try:
                statuses = tuple(JobStatus(s) for s in items) or None
            except ValueError:
                known = ", ".join(s.value for s in JobStatus)
                raise InvalidArgumentsError(f"unknown status in {items!r}; known: {known}") from None
        limit = max(1, min(int(limit), MAX_LIST_LIMIT))
        return JobFilter(statuses, type, queue, tag, older_than, limit, cursor)

    def job_events(self, job_id: str) -> list[JobEvent]:
        self.require_job(job_id)
        return self.backend.job_events(job_id)

    def wait(self, job_id: str, poll_interval: float = 0.5, timeout: float | None = None) -> Job:
        """Block until the job ends: the completed job, `JobFailed` if it failed or was cancelled,
        `TimeoutError` when `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.require_job(job_id)
            if job.status is JobStatus.COMPLETED:
                return job
            if job.status in TERMINAL_STATUSES:
                raise JobFailed(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout}s")
            pause = poll_interval if deadline is None else min(poll_interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    # ------------------------------------------------------------------------------------------ steering
    def cancel(self, job_id: str) -> Job:
        """Cancel a waiting job at once; for a running job, request cancellation (it ends `cancelled`)."""
        return self.backend.cancel_job(job_id, self.clock())

    def retry(self, job_id: str) -> Job:
        """Make a failed or cancelled job pending again, with a fresh retry budget."""
        return self.backend.retry_job(job_id, self.clock())

    def delete(self, job_id: str) -> None:
        """Delete a job that is not processing, with its history."""
        self.backend.delete_job(job_id)

    def purge(self, older_than_s: float | None = None, statuses: Sequence[JobStatus | str] | None = None) -> int:
        """Delete finished jobs that finished more than `older_than_s` ago (default: the retention)."""
        if older_than_s is None:
            older_than_s = self.settings.retention_days * 86400
        known = {s.value for s in JobStatus}
        if statuses and not {str(s) for s in statuses} <= known:
            raise InvalidArgumentsError(f"unknown status in {list(statuses)!r}; known: {', '.join(sorted(known))}")
        chosen = tuple(JobStatus(s) for s in statuses) if statuses else tuple(TERMINAL_STATUSES)
        if not set(chosen) <= TERMINAL_STATUSES:
            raise InvalidArgumentsError("purge deletes finished jobs only: completed, failed or cancelled")
        return self.backend.purge_jobs(chosen, self.clock() - older_than_s)

    def bulk(
        self,
        action: str,
        ids: Sequence[str] | None = None,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        type: str | None = None,  # noqa: A002 - the SPEC's filter name
        queue: str | None = None,
        tag: str | None = None,
        older_than_s: float | None = None,
    ) -> int:
        """Cancel, retry or delete the given jobs, or every job matching the filter; returns how many changed.
        Jobs whose state does not allow the action are skipped."""
        actions: dict[str, Callable[[str], object]] = {
            "cancel": self.cancel,
            "retry": self.retry,
            "delete": self.delete,
        }
        if action not in actions:
            raise InvalidArgumentsError(f"unknown bulk action {action!r}; known: cancel, retry, delete")
        if ids is None:
            older = None if older_than_s is None else self.clock() - older_than_s
            ids = self.backend.select_ids(self.job_filter(status, type, queue, tag, older_than=older))
        affected = 0
        for job_id in ids:
            try:
                actions[action](job_id)
            except (JobNotFoundError, InvalidStateError):
                continue
            affected += 1
        return affected

