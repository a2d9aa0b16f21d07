"""Rows of both dialects into the values the backend returns: a job, its history, a claim, a worker.

A dialect hands over JSON columns as text (SQLite) or already decoded (PostgreSQL): `decode` is its driver's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.backends.params import ClaimedJob, Lease, WorkflowRow
from conveyor.job import Job, JobEvent, JobStatus, WorkerInfo, to_datetime

Decode = Callable[[Any], Any]


def job_from_row(row: dict[str, Any], decode: Decode) -> Job:
    return Job(
        id=str(row["id"]),
        type=row["type"],
        queue=row["queue"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        args=decode(row["args"]),
        result=decode(row["result"]),
        error=row["error"],
        error_detail=row["error_detail"],
        progress=row["progress"],
        progress_info=decode(row["progress_info"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        run_at=to_datetime(row["run_at"]),  # type: ignore[arg-type]
        tags=decode(row["tags"]),
        metadata=decode(row["metadata"]),
        unique_key=row["unique_key"],
        created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
        updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
        started_at=to_datetime(row["started_at"]),
        completed_at=to_datetime(row["completed_at"]),
        worker_id=row["worker_id"],
        cancel_requested=bool(row["cancel_requested"]),
        group_key=row.get("group_key"),
        depends_on=_parents(row.get("depends_on"), decode),
        workflow_id=str(row["workflow_id"]) if row.get("workflow_id") is not None else None,
        step=row.get("step"),
        webhook_url=row.get("webhook_url"),
    )


def _parents(value: Any, decode: Decode) -> list[str]:
    """`depends_on` as a query returns it: a JSON array (SQLite), an array (PostgreSQL), or no column at all."""
    if value is None:
        return []
    found = decode(value) if isinstance(value, str) else value
    return sorted(str(v) for v in found)


def event_from_row(row: dict[str, Any]) -> JobEvent:
    return JobEvent(
        id=row["id"],
        job_id=str(row["job_id"]),
        at=to_datetime(row["at"]),  # type: ignore[arg-type]
        from_status=JobStatus(row["from_status"]) if row["from_status"] else None,
        to_status=JobStatus(row["to_status"]),
        worker_id=row["worker_id"],
        message=row["message"],
    )


def claimed_from_row(row: Sequence[Any], worker_id: str, decode: Decode) -> ClaimedJob:
    """A claim's row: `id, type, queue, priority, run_at, args, attempts, attempts_base, max_retries, timeout`."""
    job_id, type_, queue, priority, _run_at, args, attempts, base, max_retries, timeout = row[:10]
    return ClaimedJob(
        id=str(job_id),
        type=type_,
        queue=queue,
        priority=priority,
        args=decode(args),
        attempt=attempts,
        retries_used=attempts - base - 1,
        max_retries=max_retries,
        timeout=timeout,
        lease=Lease(worker_id, attempts),
    )


def claimed_in_order(rows: Sequence[Sequence[Any]], worker_id: str, decode: Decode) -> list[ClaimedJob]:
    """A claim's rows best first (a database returns an UPDATE's rows in no particular order): priority, then
    `run_at`, then enqueue order (ids are time-ordered)."""
    ordered = sorted(rows, key=lambda r: (-r[3], r[4], str(r[0])))
    return [claimed_from_row(r, worker_id, decode) for r in ordered]


def worker_from_row(row: dict[str, Any], decode: Decode) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=decode(row["queues"]),
        slots=row["slots"],
        started_at=to_datetime(row["started_at"]),  # type: ignore[arg-type]
        heartbeat_at=to_datetime(row["heartbeat_at"]),  # type: ignore[arg-type]
        running=list(decode(row["running"]) or []),
        types=decode(row["types"]),
    )


def is_uuid(value: object) -> bool:
    """Job ids are UUIDs on every backend: anything else names no job (and PostgreSQL would refuse to compare it)."""
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return False
    return isinstance(value, str)


def workflow_from_row(row: dict[str, Any], decode: Decode) -> WorkflowRow:
    return WorkflowRow(
        id=str(row["id"]),
        name=row["name"],
        status=row["status"],
        metadata=decode(row["metadata"]),
        steps_total=row["steps_total"],
        steps_done=row["steps_done"],
        created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
        updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
        completed_at=to_datetime(row["completed_at"]),
    )
