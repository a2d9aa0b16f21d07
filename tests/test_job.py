"""The job model: states, the JSON shape of SPEC section 4, ids, and the error hierarchy."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from conveyor import (
    BackendError,
    ConfigError,
    ConveyorError,
    InvalidArgumentsError,
    InvalidStateError,
    Job,
    JobEvent,
    JobFailed,
    JobNotFoundError,
    JobStatus,
    QueueInfo,
    UnknownTaskError,
    WorkerInfo,
)
from conveyor.ids import uuid7, uuid7_many
from conveyor.job import OPEN_STATUSES, TERMINAL_STATUSES, iso

SECTION_1_FIELDS = {
    "id", "type", "queue", "status", "priority", "args", "result", "error", "error_detail", "progress",
    "progress_info", "attempts", "max_retries", "timeout", "run_at", "tags", "metadata", "unique_key",
    "created_at", "updated_at", "started_at", "completed_at", "worker_id",
}
AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def make_job(**changes: object) -> Job:
    values: dict[str, object] = {
        "id": uuid7(), "type": "t", "queue": "default", "status": JobStatus.PENDING, "priority": 0, "args": {"a": 1},
        "result": None, "error": None, "error_detail": None, "progress": 0, "progress_info": None, "attempts": 0,
        "max_retries": 3, "timeout": None, "run_at": AT, "tags": [], "metadata": {}, "unique_key": None,
        "created_at": AT, "updated_at": AT, "started_at": None, "completed_at": None, "worker_id": None,
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def test_states() -> None:
    assert [s.value for s in JobStatus] == ["waiting", "scheduled", "pending", "processing", "completed", "failed",
                                            "cancelled"]
    assert TERMINAL_STATUSES == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    assert OPEN_STATUSES | TERMINAL_STATUSES == set(JobStatus) and not OPEN_STATUSES & TERMINAL_STATUSES
    assert JobStatus.FAILED.is_terminal and not JobStatus.PROCESSING.is_terminal
    assert JobStatus("pending") is JobStatus.PENDING and JobStatus.PENDING == "pending"


def test_job_json_has_every_field_of_section_1() -> None:
    job = make_job(status=JobStatus.COMPLETED, result={"ok": True}, completed_at=AT, tags=["x"])
    data = job.to_dict()
    assert SECTION_1_FIELDS <= set(data)
    assert data["status"] == "completed" and data["created_at"] == "2026-01-02T03:04:05.678000Z"
    assert data["started_at"] is None and data["tags"] == ["x"] and data["metadata"] == {}
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert job.is_terminal and not make_job().is_terminal


def test_jobs_are_frozen_values() -> None:
    job = make_job()
    with pytest.raises(AttributeError):
        job.status = JobStatus.FAILED  # type: ignore[misc]
    assert job == make_job(id=job.id)


def test_event_queue_and_worker_json() -> None:
    created = JobEvent(1, "j", AT, None, JobStatus.PENDING, None, None).to_dict()
    assert created == {"id": 1, "at": iso(AT), "from_status": None, "to_status": "pending", "worker_id": None,
                       "message": None}
    moved = JobEvent(2, "j", AT, JobStatus.PENDING, JobStatus.PROCESSING, "w", "m").to_dict()
    assert (moved["from_status"], moved["to_status"], moved["worker_id"]) == ("pending", "processing", "w")
    queue = QueueInfo("q", counts={"pending": 2}).to_dict()
    assert queue["counts"] == {"waiting": 0, "scheduled": 0, "pending": 2, "processing": 0, "completed": 0,
                               "failed": 0, "cancelled": 0}
    assert (queue["paused"], queue["concurrency"], queue["rate_limit"]) == (False, None, None)
    assert (queue["group_concurrency"], queue["group_rate_limit"], queue["keyed"]) == (None, None, False)
    worker = WorkerInfo("w", "h", 1, None, 4, AT, AT, ["j"]).to_dict()
    assert set(worker) == {"id", "host", "pid", "queues", "slots", "started_at", "heartbeat_at", "running", "types"}


def test_ids_are_uuid7_strings_increasing_within_a_process() -> None:
    import uuid

    ids = [uuid7() for _ in range(10_000)]  # more than one millisecond's counter
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == ids[0]


def test_batches_of_ids_are_uuid7_and_keep_increasing_with_single_ids() -> None:
    import uuid

    ids = [uuid7(), *uuid7_many(9000), uuid7(), *uuid7_many(3)]  # 9,000: the counter borrows milliseconds
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for text in ids[::97]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert abs(int(ids[0][:8] + ids[0][9:13], 16) / 1000 - time.time()) < 60  # the millisecond stamp is now


def test_error_hierarchy_and_messages() -> None:
    for cls in (ConfigError, UnknownTaskError, InvalidArgumentsError, JobNotFoundError, InvalidStateError,
                JobFailed, BackendError):
        assert issubclass(cls, ConveyorError)
    assert ConfigError().message == "The configuration is invalid."
    assert BackendError().message == "The database failed."
    unknown = UnknownTaskError("x", ["b", "a"])
    assert unknown.message == "unknown task type 'x'; registered: a, b" and unknown.code == "unknown_task"
    assert JobNotFoundError("abc").job_id == "abc" and "abc" in JobNotFoundError("abc").message
    failed = JobFailed(make_job(status=JobStatus.FAILED, error="boom"))
    assert failed.job.error == "boom" and "failed: boom" in failed.message
    assert InvalidArgumentsError("bad", errors=[{"loc": ("a",)}]).errors == [{"loc": ("a",)}]
