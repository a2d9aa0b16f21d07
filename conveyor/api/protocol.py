"""The HTTP worker protocol: claim, heartbeat, complete, fail, so a worker in any language can process jobs.

Each call after the claim carries the lease (`worker_id`, `attempt`); the backend guards every write with it, so a
worker whose lease expired and whose job was rescued or reclaimed gets 409 and can never overwrite the outcome.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from conveyor.api.errors import ApiError
from conveyor.api.models import ClaimRequest, CompleteRequest, FailRequest, HeartbeatRequest, LeaseRequest
from conveyor.backends.base import ClaimParams, Completed, Failed, Lease, ProgressUpdate, WorkerBeat
from conveyor.backends.rows import is_uuid
from conveyor.errors import JobNotFoundError
from conveyor.job import JobStatus, iso, to_datetime
from conveyor.retry import RetryPolicy

if TYPE_CHECKING:
    from conveyor.app import Conveyor

HTTP_WORKER_PID = 0  # a remote worker's process id is unknown


class WorkerProtocol:
    def __init__(self, conveyor: Conveyor) -> None:
        self.conveyor = conveyor

    def _lease_s(self, requested: float | None) -> float:
        return requested or self.conveyor.settings.lease_s

    def _beat(
        self, worker_id: str, host: str, queues: list[str] | None, slots: int, lease_s: float,
        types: tuple[str, ...] | None = None,
    ) -> list[str]:
        now = self.conveyor.clock()
        beat = WorkerBeat(
            worker_id, host, HTTP_WORKER_PID, tuple(queues) if queues else None, slots, now, now, now + lease_s,
            types=types,
        )
        return self.conveyor.backend.heartbeat(beat)

    def claim(self, body: ClaimRequest, host: str) -> dict[str, Any]:
        backend = self.conveyor.backend
        worker_id = body.worker_id or f"http:{host}:{uuid.uuid4().hex[:12]}"
        lease_s = self._lease_s(body.lease_s)
        types = tuple(body.types) if body.types else None  # only jobs of these types are claimed (None: any)
        self._beat(worker_id, host, body.queues, body.limit, lease_s, types)
        now = self.conveyor.clock()
        queues = tuple(body.queues) if body.queues else None
        claimed = backend.claim_jobs(ClaimParams(worker_id, body.limit, now, now + lease_s, queues, types)).jobs
        expires = iso(to_datetime(now + lease_s))
        return {
            "worker_id": worker_id,
            "lease_s": lease_s,
            "jobs": [
                {
                    "id": j.id,
                    "type": j.type,
                    "queue": j.queue,
                    "priority": j.priority,
                    "args": j.args,
                    "attempt": j.attempt,
                    "max_retries": j.max_retries,
                    "timeout": j.timeout,
                    "lease_expires_at": expires,
                }
                for j in claimed
            ],
        }

    def _check_lease(self, job_id: str, body: LeaseRequest) -> None:
        job = self.conveyor.require_job(job_id)
        if job.status is not JobStatus.PROCESSING or job.worker_id != body.worker_id or job.attempts != body.attempt:
            raise ApiError(409, f"lease lost: job {job_id} is {job.status} (attempt {job.attempts})", "lease_lost")

    def heartbeat(self, job_id: str, body: HeartbeatRequest, host: str) -> dict[str, Any]:
        self._check_lease(job_id, body)
        lease_s = self._lease_s(body.lease_s)
        cancel_ids = self._beat(body.worker_id, host, None, 1, lease_s)
        if body.progress is not None or body.progress_info is not None:
            job = self.conveyor.require_job(job_id)
            progress = body.progress if body.progress is not None else job.progress
            update = ProgressUpdate(job_id, Lease(body.worker_id, body.attempt), progress, body.progress_info)
            self.conveyor.backend.write_progress([update], self.conveyor.clock())
        self._check_lease(job_id, body)  # the renewal only touches jobs this worker still holds
        return {
            "cancel_requested": job_id in cancel_ids,
            "lease_expires_at": iso(to_datetime(self.conveyor.clock() + lease_s)),
        }

    def complete(self, job_id: str, body: CompleteRequest) -> dict[str, Any]:
        outcome = Completed(job_id, Lease(body.worker_id, body.attempt), body.result)
        return self._finish(job_id, outcome)

    def fail(self, job_id: str, body: FailRequest) -> dict[str, Any]:
        retry_at = None
        if body.retry:  # when: the task's policy (a default one for a type this server does not register)
            task = self.conveyor.tasks.get(self.conveyor.require_job(job_id).type)
            policy = task.retry_policy if task is not None else RetryPolicy()
            retry_at = policy.retry_at(body.attempt, self.conveyor.clock(), after=body.retry_after)
        outcome = Failed(job_id, Lease(body.worker_id, body.attempt), body.error, body.detail, retry_at)
        return self._finish(job_id, outcome)

    def _finish(self, job_id: str, outcome: Completed | Failed) -> dict[str, Any]:
        if not is_uuid(job_id):  # no such job (and PostgreSQL would fail on the id, not answer "lost")
            raise JobNotFoundError(job_id)
        lost = self.conveyor.backend.finish_jobs([outcome], self.conveyor.clock())
        job = self.conveyor.require_job(job_id)
        if lost:
            raise ApiError(409, f"lease lost: job {job_id} is {job.status} (attempt {job.attempts})", "lease_lost")
        return job.to_dict()
