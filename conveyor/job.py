"""The job model: states, the Job record, its history, queues and workers as users see them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic_core import to_jsonable_python

from conveyor.jsonsafe import json_problem


class JobStatus(StrEnum):
    WAITING = "waiting"  # for its parents (`depends_on`) to complete
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


OPEN_STATUSES = frozenset({JobStatus.WAITING, JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.PROCESSING})
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
LATEST_RUN_AT_S = datetime(9999, 1, 1, tzinfo=UTC).timestamp()  # a later run_at could not be read back as a datetime


def json_value(value: Any, what: str) -> Any:
    """`value` as plain JSON data, as a job stores it (a result, progress details). Raises ValueError naming `what`
    for what JSON cannot hold or a backend would alter: objects pydantic cannot serialise, NaN and infinite floats,
    strings with a NUL character (the same job must behave the same on both backends; see `jsonsafe`)."""
    try:
        plain = to_jsonable_python(value)
    except ValueError as exc:  # PydanticSerializationError is one
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(plain, int | bool | None) and (problem := json_problem(plain, what)) is not None:
        raise ValueError(problem)
    return plain


def to_datetime(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)  # not slots: `copies` builds a batch's jobs from one by copying its __dict__
class Job:
    """One job, as stored. Timestamps are timezone-aware UTC datetimes."""

    id: str
    type: str
    queue: str
    status: JobStatus
    priority: int
    args: dict[str, Any]
    result: Any
    error: str | None
    error_detail: str | None
    progress: int
    progress_info: dict[str, Any] | None
    attempts: int
    max_retries: int
    timeout: float | None
    run_at: datetime
    tags: list[str]
    metadata: dict[str, Any]
    unique_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    worker_id: str | None
    cancel_requested: bool = False
    group_key: str | None = None  # the job's key for fair limits (SPEC section 7)
    depends_on: list[str] = field(default_factory=list)  # ids of the jobs this one waits for (SPEC section 7)
    workflow_id: str | None = None
    step: str | None = None  # its step name in the workflow
    webhook_url: str | None = None  # the enqueue option: this job's terminal event is POSTed there (webhooks)
    # True when `enqueue` returned the open job that already held the `unique_key` instead of storing a new one
    # (REST: 200 instead of 201). Not stored: a job read back later says False.
    existing: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def copies(self, ids: Sequence[str], args: Sequence[dict[str, Any]]) -> list[Job]:
        """Jobs equal to this one but for their ids and args (and each its own `depends_on` list). A batch enqueue
        returns thousands: a frozen dataclass's `__init__` sets its 30 fields one `object.__setattr__` at a time
        (about 5 us a job), a copy of the __dict__ costs a tenth of that."""
        base = self.__dict__
        new = object.__new__
        out = []
        for job_id, job_args in zip(ids, args, strict=True):
            job = new(Job)
            fields = job.__dict__
            fields.update(base)
            fields["id"] = job_id
            fields["args"] = job_args
            fields["depends_on"] = []
            out.append(job)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The job as the JSON object of SPEC section 4."""
        return {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "status": self.status.value,
            "priority": self.priority,
            "args": self.args,
            "result": self.result,
            "error": self.error,
            "error_detail": self.error_detail,
            "progress": self.progress,
            "progress_info": self.progress_info,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "run_at": iso(self.run_at),
            "tags": self.tags,
            "metadata": self.metadata,
            "unique_key": self.unique_key,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "worker_id": self.worker_id,
            "cancel_requested": self.cancel_requested,
            "group_key": self.group_key,
            "depends_on": self.depends_on,
            "workflow_id": self.workflow_id,
            "step": self.step,
            "webhook_url": self.webhook_url,
        }


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One transition in a job's history. `from_status` is None for the creation."""

    id: int
    job_id: str
    at: datetime
    from_status: JobStatus | None
    to_status: JobStatus
    worker_id: str | None
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "from_status": self.from_status.value if self.from_status else None,
            "to_status": self.to_status.value,
            "worker_id": self.worker_id,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's live settings and its job counts by status."""

    name: str
    paused: bool = False
    concurrency: int | None = None
    rate_limit: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    group_concurrency: int | None = None  # fair limits: each key of the queue at most this many processing
    group_rate_limit: float | None = None  # and at most this many starts per second
    keyed: bool = False  # whether the queue has had jobs with a group_key (its claims take the fair path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "counts": {s.value: self.counts.get(s.value, 0) for s in JobStatus},
            "group_concurrency": self.group_concurrency,
            "group_rate_limit": self.group_rate_limit,
            "keyed": self.keyed,
        }


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One key of a queue (fair limits): its jobs running and ready, and its limits (its own, else the queue's)."""

    key: str
    running: int
    ready: int
    concurrency: int | None
    rate_limit: float | None
    concurrency_override: bool = False
    rate_limit_override: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "running": self.running,
            "ready": self.ready,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "overrides": {"concurrency": self.concurrency_override, "rate_limit": self.rate_limit_override},
        }


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker process."""

    id: str
    host: str
    pid: int
    queues: list[str] | None
    slots: int
    started_at: datetime
    heartbeat_at: datetime
    running: list[str] = field(default_factory=list)
    types: list[str] | None = None  # the task types it runs (None: any)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "slots": self.slots,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "running": self.running,
            "types": self.types,
        }


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a job listing; `next_cursor` is None on the last page."""

    jobs: list[Job]
    next_cursor: str | None
