"""The context a running task receives as its first argument (`ctx`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.job import json_value

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.job import Job


class Retry(Exception):  # noqa: N818 - an outcome, not an error
    """Raised by a task: retry this job after `after` seconds (it counts as a failed attempt)."""

    def __init__(self, after: float = 0.0, reason: str = "retry requested by the task") -> None:
        super().__init__(reason)
        self.after = after
        self.reason = reason


class Cancel(Exception):  # noqa: N818 - an outcome, not an error
    """Raised by a task: end this job `cancelled`, no retry."""

    def __init__(self, reason: str = "cancelled by the task") -> None:
        super().__init__(reason)
        self.reason = reason


@functools.cache
def _logger(job_type: str) -> logging.Logger:
    return logging.getLogger(f"conveyor.task.{job_type}")


ProgressSink = Callable[[str, int, dict[str, Any] | None], None]


class JobContext:
    """What a task knows of its job and can do while it runs."""

    def __init__(
        self,
        app: Conveyor,
        job_id: str,
        job_type: str,
        queue: str,
        attempt: int,
        progress_sink: ProgressSink | None = None,
    ) -> None:
        self.app = app
        self.job_id = job_id
        self.type = job_type
        self.queue = queue
        self.attempt = attempt
        self.logger = _logger(job_type)
        self._progress_sink = progress_sink
        self._cancelled = False
        self._parent_results: dict[str, Any] | None = None
        self._workflow_id: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancellation of this job was requested (or its attempt timed out): stop soon."""
        return self._cancelled

    @property
    def parent_results(self) -> dict[str, Any]:
        """The results of this job's parents (SPEC section 7): by step name for a workflow's step, by job id for
        plain `depends_on`; `{}` for a job without parents. Read from the database once, at first use."""
        if self._parent_results is None:
            self._parent_results = self.app.backend.parent_results(self.job_id)
        return self._parent_results

    def extend_workflow(self, steps: Sequence[Any], before: Sequence[str] = ()) -> list[Job]:
        """Add steps to this step's own workflow (`app.extend_workflow`): e.g. one step per item found while it
        runs, with a final step in `before` that then waits for them all."""
        from conveyor.errors import InvalidStateError

        if self._workflow_id is None:
            job = self.app.get_job(self.job_id)
            if job is None or job.workflow_id is None:
                raise InvalidStateError(f"job {self.job_id} is not a step of a workflow")
            self._workflow_id = job.workflow_id
        return self.app.extend_workflow(self._workflow_id, steps, before)

    def _request_cancel(self) -> None:
        self._cancelled = True

    def progress(self, percent: float, **info: Any) -> None:
        """Report progress 0-100 with optional details (stage, done, total...); non-blocking. Details JSON cannot
        hold raise ValueError here, in the task, rather than failing the worker's next write."""
        value = max(0, min(100, int(percent)))
        details = json_value(info, "progress details") if info else None
        if self._progress_sink is not None:
            self._progress_sink(self.job_id, value, details)

    def enqueue(self, task_type: str, args: dict[str, Any] | None = None, **options: Any) -> Job:
        """Enqueue a follow-up job."""
        return self.app.enqueue(task_type, args, **options)

    def __repr__(self) -> str:
        return f"<JobContext {self.type} {self.job_id} attempt={self.attempt}>"
