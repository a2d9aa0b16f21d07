"""What the sync and async REST clients share: the requests they make (`_Request`, built without I/O), how an answer
becomes a Job or an error, and the SSE helpers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from conveyor.errors import (
    ConveyorError,
    InvalidArgumentsError,
    InvalidStateError,
    JobFailed,
    JobNotFoundError,
    UnknownTaskError,
)
from conveyor.job import TERMINAL_STATUSES, Job, JobStatus

DEFAULT_URL = "http://127.0.0.1:8000"
# an idle connection is reused for 2 s only: `conveyor serve` (uvicorn) closes one after 5 s, and at httpx's default of
# 5 s a request could go out on a connection the server is closing (a failed request that was never answered)
LIMITS = httpx.Limits(keepalive_expiry=2.0)
PREFIX = "/api/v1"
_OPTIONS = ("queue", "priority", "max_retries", "timeout", "delay", "run_at", "unique_key", "tags", "metadata",
            "group_key", "webhook_url")


class ApiError(ConveyorError):
    """The API answered with an error."""

    code = "api_error"

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"{status} {code}: {message}")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_from_dict(data: dict[str, Any]) -> Job:
    """A `Job` from its JSON object (SPEC section 4)."""
    return Job(
        id=data["id"],
        type=data["type"],
        queue=data["queue"],
        status=JobStatus(data["status"]),
        priority=data["priority"],
        args=data["args"],
        result=data.get("result"),
        error=data.get("error"),
        error_detail=data.get("error_detail"),
        progress=data.get("progress", 0),
        progress_info=data.get("progress_info"),
        attempts=data.get("attempts", 0),
        max_retries=data["max_retries"],
        timeout=data.get("timeout"),
        run_at=_dt(data["run_at"]),  # type: ignore[arg-type]
        tags=data.get("tags") or [],
        metadata=data.get("metadata") or {},
        unique_key=data.get("unique_key"),
        created_at=_dt(data["created_at"]),  # type: ignore[arg-type]
        updated_at=_dt(data["updated_at"]),  # type: ignore[arg-type]
        started_at=_dt(data.get("started_at")),
        completed_at=_dt(data.get("completed_at")),
        worker_id=data.get("worker_id"),
        cancel_requested=bool(data.get("cancel_requested", False)),
        group_key=data.get("group_key"),
        depends_on=list(data.get("depends_on") or []),
        workflow_id=data.get("workflow_id"),
        step=data.get("step"),
        webhook_url=data.get("webhook_url"),
    )


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: Any = None
    job_id: str | None = None  # for a JobNotFoundError on 404


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise InvalidArgumentsError(f"unknown enqueue options: {', '.join(sorted(unknown))}")
    out = {k: v for k, v in options.items() if v is not None}
    if isinstance(out.get("run_at"), datetime):
        out["run_at"] = out["run_at"].isoformat()
    return out


def _list_params(
    status: str | Sequence[str] | None, type_: str | None, queue: str | None, tag: str | None, limit: int,
    cursor: str | None,
) -> tuple[tuple[str, str], ...]:
    params = [("limit", str(limit))]
    if status is not None:
        params += [("status", str(s)) for s in ([status] if isinstance(status, str) else status)]
    params += [(k, v) for k, v in (("type", type_), ("queue", queue), ("tag", tag), ("cursor", cursor)) if v]
    return tuple(params)


def _check(request: _Request, response: httpx.Response) -> Any:
    if response.status_code < 400:
        return None if response.status_code == 204 or not response.content else response.json()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason_phrase
    status = response.status_code
    if status == 404 and request.job_id is not None:
        raise JobNotFoundError(request.job_id)
    if status == 409:
        raise InvalidStateError(message)
    if code == "unknown_task":  # the same exception as the Python API's for the same mistake
        raise UnknownTaskError.from_message(message)
    if status in (400, 413, 422):
        raise InvalidArgumentsError(message)
    raise ApiError(status, code, message)


def _done(job: Job) -> Job | None:
    if job.status is JobStatus.COMPLETED:
        return job
    if job.status in TERMINAL_STATUSES:
        raise JobFailed(job)
    return None


def _job_data(event: ServerSentEvent) -> dict[str, Any] | None:
    """The job object of an `event: job` frame (other events: None)."""
    return event.json() if event.event == "job" and event.data else None


def _headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("CONVEYOR_API_TOKEN") or None
    return {"Authorization": f"Bearer {token}"} if token else {}


