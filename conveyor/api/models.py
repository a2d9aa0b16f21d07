"""Pydantic models of the HTTP edge: request bodies (validated) and response shapes (documented in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conveyor.job import JobStatus
from conveyor.options import EnqueueSpec
from conveyor.workflows.model import WorkflowStatus
from conveyor.workflows.spec import WorkflowSpec

Name = Annotated[str, Field(min_length=1, max_length=200)]
Tag = Annotated[str, Field(min_length=1, max_length=200)]
MAX_BATCH = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------------------------------- requests
class EnqueueRequest(EnqueueSpec):
    """One job to enqueue. `args` is validated against the task's argument schema (see `<task>_args`)."""


class BatchRequest(_Strict):
    jobs: list[EnqueueRequest] = Field(max_length=MAX_BATCH)


class WorkflowRequest(WorkflowSpec):
    """A workflow: its `name`, `metadata` and `steps`, each with a unique `name`, a `type`, `args`, the step names
    it runs `after`, and job options. Validated whole before anything is stored (422 naming the step)."""


class BulkFilter(_Strict):
    status: list[JobStatus] | None = None
    type: Name | None = None
    queue: Name | None = None
    tag: Tag | None = None
    older_than: float | Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*[smhd]?\s*$")] | None = Field(
        default=None, description="seconds, or a duration such as 30s, 15m, 2h, 7d"
    )


class BulkRequest(_Strict):
    """Act on the listed `ids`, or on every job matching `filter` (exactly one of the two)."""

    action: Literal["cancel", "retry", "delete"]
    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(default=None, max_length=MAX_BATCH)
    filter: BulkFilter | None = None


class QueuePatch(_Strict):
    """Fields left out are unchanged; `null` lifts a limit."""

    paused: bool | None = None
    concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    rate_limit: float | None = Field(default=None, ge=0.001, le=1_000_000, description="jobs started per second")
    group_concurrency: int | None = Field(default=None, ge=1, le=1_000_000,
                                          description="most jobs of one key processing at once")
    group_rate_limit: float | None = Field(default=None, ge=0.001, le=1_000_000,
                                           description="jobs of one key started per second")


class ClaimRequest(_Strict):
    worker_id: Name | None = Field(default=None, description="omit on the first claim: the server assigns one")
    types: list[Name] | None = Field(default=None, max_length=1000, description="task types this worker runs")
    queues: list[Name] | None = Field(default=None, max_length=1000)
    limit: int = Field(default=1, ge=1, le=100)
    lease_s: float | None = Field(default=None, ge=1, le=3600, description="default: CONVEYOR_LEASE_S")
    host: Annotated[str, Field(max_length=200)] | None = None


class LeaseRequest(_Strict):
    worker_id: Name
    attempt: int = Field(ge=1, le=2**31 - 1)


class HeartbeatRequest(LeaseRequest):
    progress: int | None = Field(default=None, ge=0, le=100)
    progress_info: dict[str, Any] | None = None
    lease_s: float | None = Field(default=None, ge=1, le=3600)


class CompleteRequest(LeaseRequest):
    result: Any = None


class FailRequest(LeaseRequest):
    error: Annotated[str, Field(min_length=1, max_length=10_000)]
    detail: Annotated[str, Field(max_length=100_000)] | None = None
    retry: bool = Field(default=True, description="retry with backoff if the job has retries left")
    retry_after: float | None = Field(default=None, ge=0, le=365 * 86400, description="seconds; default: backoff")


# ---------------------------------------------------------------------------------------------------- responses
class JobOut(BaseModel):
    id: str
    type: str
    queue: str
    status: JobStatus
    priority: int
    args: dict[str, Any]
    result: Any = None
    error: str | None = None
    error_detail: str | None = None
    progress: int
    progress_info: dict[str, Any] | None = None
    attempts: int
    max_retries: int
    timeout: float | None = None
    run_at: datetime
    tags: list[str]
    metadata: dict[str, Any]
    unique_key: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    group_key: str | None = None
    depends_on: list[str] = Field(default_factory=list, description="ids of the jobs this one waits for")
    workflow_id: str | None = None
    step: str | None = Field(default=None, description="the job's step name in its workflow")
    webhook_url: str | None = Field(default=None, description="where this job's terminal event is POSTed")


class WorkflowOut(BaseModel):
    id: str
    name: str
    status: WorkflowStatus
    metadata: dict[str, Any]
    steps_total: int
    steps_done: int = Field(description="steps completed")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    steps: list[JobOut] | None = Field(default=None, description="its jobs (POST and GET of one workflow)")


class WorkflowList(BaseModel):
    workflows: list[WorkflowOut]


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = None


class JobsOut(BaseModel):
    jobs: list[JobOut]


class EventOut(BaseModel):
    at: datetime
    from_status: JobStatus | None
    to_status: JobStatus
    worker_id: str | None
    message: str | None


class EventList(BaseModel):
    events: list[EventOut]


class Affected(BaseModel):
    affected: int


class QueueOut(BaseModel):
    name: str
    paused: bool
    concurrency: int | None
    rate_limit: float | None
    counts: dict[str, int]
    group_concurrency: int | None = None
    group_rate_limit: float | None = None
    keyed: bool = False


class QueueList(BaseModel):
    queues: list[QueueOut]


class WorkerOut(BaseModel):
    id: str
    host: str
    pid: int
    queues: list[str] | None
    slots: int
    started_at: datetime
    heartbeat_at: datetime
    running: list[str]
    types: list[str] | None = Field(default=None, description="the task types it runs (null: any)")


class WorkerList(BaseModel):
    workers: list[WorkerOut]


class StatsOut(BaseModel):
    counts: dict[str, int]
    counts_by_type: dict[str, dict[str, int]]
    durations: dict[str, dict[str, float]]
    throughput: list[dict[str, Any]]
    workers: int
    workflows: dict[str, int] = Field(default_factory=dict, description="workflows by status (`running`, ...)")
    unserved: list[dict[str, Any]] = Field(
        default_factory=list, description="types with jobs waiting that no live worker runs: {type, pending, scheduled}"
    )


class ClaimedJobOut(BaseModel):
    id: str
    type: str
    queue: str
    priority: int
    args: dict[str, Any]
    attempt: int
    max_retries: int
    timeout: float | None
    lease_expires_at: datetime


class ClaimOut(BaseModel):
    worker_id: str
    lease_s: float
    jobs: list[ClaimedJobOut]


class HeartbeatOut(BaseModel):
    cancel_requested: bool
    lease_expires_at: datetime


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "the body is not a JSON object",
        401: "missing or wrong API token",
        404: "not found",
        409: "the job's state does not allow it",
        413: "the body is too large",
        422: "a field is missing or invalid",
    }.items()
}
