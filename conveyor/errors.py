"""The exception hierarchy. Every error Conveyor raises is a ConveyorError.

ConveyorError
├── ConfigError            a setting or database URL is invalid
├── UnknownTaskError       no task of the app registers that type
├── InvalidArgumentsError  a payload or an enqueue option is invalid
├── JobNotFoundError       no job has that id
├── WorkflowNotFoundError  no workflow has that id
├── ScheduleNotFoundError  no schedule has that name
├── InvalidStateError      the job's state does not allow that action
├── JobFailed              `wait` saw the job end failed or cancelled
└── BackendError           the database failed (the driver's error is the cause)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.job import Job


class ConveyorError(Exception):
    """Conveyor failed."""

    code = "conveyor_error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(ConveyorError):
    """The configuration is invalid."""

    code = "invalid_config"


class UnknownTaskError(ConveyorError):
    """No registered task has that type."""

    code = "unknown_task"

    def __init__(self, task_type: str, known: list[str] | None = None, where: str | None = None) -> None:
        self.task_type = task_type
        self.known = known
        hint = f"; registered: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"{where + ': ' if where else ''}unknown task type {task_type!r}{hint}")

    @classmethod
    def from_message(cls, message: str) -> UnknownTaskError:
        """The error as an API answered it (the client raises it for code `unknown_task`)."""
        match = re.search(r"unknown task type '([^']*)'", message)
        error = cls(match.group(1) if match else "")
        error.args = (message,)
        return error


class InvalidArgumentsError(ConveyorError):
    """The job's arguments or options are invalid."""

    code = "invalid_arguments"

    def __init__(self, message: str | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class JobNotFoundError(ConveyorError):
    """No job has that id."""

    code = "not_found"

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not found")


class WorkflowNotFoundError(ConveyorError):
    """No workflow has that id."""

    code = "not_found"

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id} not found")


class ScheduleNotFoundError(ConveyorError):
    """No schedule has that name."""

    code = "not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"schedule {name!r} not found")


class InvalidStateError(ConveyorError):
    """The job's state does not allow that action."""

    code = "invalid_state"

    def __init__(self, message: str | None = None, job: Job | None = None) -> None:
        self.job = job
        super().__init__(message)


class JobFailed(ConveyorError):  # noqa: N818 - the SPEC's public name
    """The job failed."""

    code = "job_failed"

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"job {job.id} ended {job.status}: {job.error or 'no error recorded'}")


class BackendError(ConveyorError):
    """The database failed."""

    code = "backend_error"

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        # What anyone may be told, the driver's details left out: "the disk holding the database is full", ...
        self.reason = reason
        super().__init__(message)
