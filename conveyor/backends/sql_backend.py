"""The backend both dialects share: every job operation written once, over a `Driver` that runs named queries.

A dialect subclasses it for its real differences only: how it connects and locks (its driver), which queues need the
limited claim, whether this process runs maintenance (leader election), and faster paths where it has them (COPY and
one worker-cycle function on PostgreSQL). The queries have the same names and parameters in both `.sql` files.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from conveyor.backends.base import Backend
from conveyor.backends.deps import DependencyOps
from conveyor.backends.driver import Driver, Tx, dumps
from conveyor.backends.limits import claim_with_limits
from conveyor.backends.params import (
    ClaimParams,
    ClaimResult,
    JobChange,
    JobFilter,
    NewJob,
    Outcome,
    ProgressUpdate,
    TaskInfo,
    WorkerBeat,
)
from conveyor.backends.queue_ops import QueueOps
from conveyor.backends.rows import claimed_in_order, event_from_row, is_uuid, job_from_row, worker_from_row
from conveyor.backends.schedules import ScheduleOps
from conveyor.backends.stats import Stats
from conveyor.backends.webhooks import WebhookOps
from conveyor.errors import ConfigError, InvalidArgumentsError, InvalidStateError, JobNotFoundError
from conveyor.job import Job, JobEvent, JobPage, JobStatus, WorkerInfo

WORKFLOW_STATUSES = ("running", "completed", "failed", "cancelled")
DELETE_BATCH = 1000  # rows per purge transaction: a big purge never holds many locks for long
DEAD_WORKER_KEEP_S = 60.0


def insert_row(job: NewJob, now: float, encode: Any = dumps) -> dict[str, Any]:
    """The parameters of `insert_job` for one job. `encode` may share the encoding of a batch's common values."""
    return {
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "status": "scheduled" if job.scheduled else "pending",
        "priority": job.priority,
        "args": dumps(job.args),
        "max_retries": job.max_retries,
        "timeout": job.timeout,
        "run_at": job.run_at,
        "tags": encode(job.tags),
        "metadata": encode(job.metadata),
        "unique_key": job.unique_key,
        "group_key": job.group_key,
        "webhook_url": job.webhook_url,
        "now": now,
    }


def shared_encoder() -> Any:
    """A JSON encoder that encodes each object once: a batch shares its tags and metadata objects."""
    seen: dict[int, str] = {}

    def encode(value: Any) -> str:
        key = id(value)
        if key not in seen:
            seen[key] = dumps(value)
        return seen[key]

    return encode


IDLE_GROUP_KEEP_S = 3600.0  # a key with nothing ready or running, and no override, is forgotten after an hour

CLAIM_WAIT_NOTED_S = 0.001  # a claim that waited this long for its transaction claims at the time it got it


class SQLBackend(QueueOps, ScheduleOps, DependencyOps, WebhookOps, Backend):
    driver: Driver

    # ------------------------------------------------------------------------------------------ dialect hooks
    def _maintains(self, now: float) -> bool:
        """Whether this process runs maintenance (rescue, prune) now: always, unless the dialect elects a leader."""
        return True

    def _limited_queues(self, tx: Tx, claim: ClaimParams) -> list[str]:
        """The claim's queues with a concurrency or rate limit (they need the limited claim)."""
        names = [r[0] for r in tx.rows("limited_queues")]
        return [q for q in names if not claim.queues or q in claim.queues]

    def _leading(self) -> bool:
        """Whether this process ran maintenance last time (pruning the outbox follows it; it takes no election)."""
        return True

    def _queues_changed(self) -> None:
        """A queue's settings changed (a dialect that caches them forgets them)."""

    def _decode(self, value: Any) -> Any:
        return self.driver.decode(value)

    # ------------------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.driver.close()

    # ------------------------------------------------------------------------------------------ producing
    def insert_jobs(self, jobs: Sequence[NewJob], now: float, connection: Any = None) -> list[Job]:
        if any(j.depends_on for j in jobs):
            return self.insert_graph(jobs, now, connection=connection)
        if connection is not None:
            raise self._no_connection()
        if not jobs:
            return []
        created_at = datetime.fromtimestamp(now, UTC)
        encode = shared_encoder()
        rows = [insert_row(j, now, encode) for j in jobs]

        def go(tx: Tx) -> list[Job]:
            if all(j.unique_key is None for j in jobs):
                tx.executemany("insert_job", rows)
                return [j.as_job(created_at) for j in jobs]
            return self._insert_unique(tx, jobs, now, rows)

        return self.driver.write(go)

    def _insert_unique(
        self, tx: Tx, jobs: Sequence[NewJob], now: float, rows: Sequence[dict[str, Any]] | None = None
    ) -> list[Job]:
        """Insert jobs one by one in `tx`: a job whose unique key an open job already holds is that job."""
        created_at = datetime.fromtimestamp(now, UTC)
        out: list[Job] = []
        for job, row in zip(jobs, rows or [insert_row(j, now) for j in jobs], strict=True):
            if tx.execute("insert_job", row) == 1:
                out.append(job.as_job(created_at))
            else:
                found = tx.dicts("get_open_by_unique_key", {"unique_key": job.unique_key})
                out.append(replace(job_from_row(found[0], self._decode), existing=True))
        return out

    def _no_connection(self) -> Exception:
        return ConfigError(f"connection= (transactional enqueue) needs the PostgreSQL backend, not {self.dialect}")

    # ------------------------------------------------------------------------------------------ reading
    def get_job(self, job_id: str) -> Job | None:
        if not is_uuid(job_id):
            return None
        rows = self.driver.read(lambda tx: tx.dicts("get_job", {"id": job_id}))
        return job_from_row(rows[0], self._decode) if rows else None

    def _filter(self, params: JobFilter) -> dict[str, Any]:
        array = self.driver.array
        return {
            "statuses": array([s.value for s in params.statuses]) if params.statuses else None,
            "type": params.type,
            "queue": params.queue,
            "tag": params.tag,
            "older_than": params.older_than,
        }

    def list_jobs(self, params: JobFilter) -> JobPage:
        if params.cursor is not None and not is_uuid(params.cursor):
            raise InvalidArgumentsError(f"invalid cursor {params.cursor!r}")
        query = {**self._filter(params), "cursor": params.cursor, "limit": params.limit + 1}
        rows = self.driver.read(lambda tx: tx.dicts("list_jobs", query))
        more = len(rows) > params.limit
        jobs = [job_from_row(r, self._decode) for r in rows[: params.limit]]
        return JobPage(jobs, jobs[-1].id if more and jobs else None)

    def select_ids(self, params: JobFilter) -> list[str]:
        return [str(r[0]) for r in self.driver.read(lambda tx: tx.rows("select_ids", self._filter(params)))]

    def job_events(self, job_id: str) -> list[JobEvent]:
        if not is_uuid(job_id):
            return []
        return [event_from_row(r) for r in self.driver.read(lambda tx: tx.dicts("job_events", {"id": job_id}))]

    def has_ready_jobs(self, queues: tuple[str, ...] | None, now: float) -> bool:
        params = {"queues": self.driver.array(queues or None), "now": now}
        return bool(self.driver.read(lambda tx: tx.rows("has_ready_jobs", params))[0][0])

    # ------------------------------------------------------------------------------------------ working
    def claim_jobs(self, params: ClaimParams) -> ClaimResult:
        return self.finish_and_claim([], [], params.now, params)[1]

    def finish_jobs(self, outcomes: Sequence[Outcome], now: float) -> list[str]:
        return self.finish_and_claim(outcomes, [], now, None)[0]

    def write_progress(self, updates: Sequence[ProgressUpdate], now: float) -> None:
        self.finish_and_claim([], updates, now, None)

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult]:
        """A worker's cycle in one transaction: progress, outcomes (each guarded by its lease), then the claim.

        A claim that waited for the transaction (SQLite's one writer: another process's cycle) claims at `now` plus
        that wait, so its jobs' `started_at` says when they were taken, after what the others took meanwhile; the
        worker's clock (a test's, say) stays the base."""
        asked = time.monotonic()

        def go(tx: Tx) -> tuple[list[str], ClaimResult]:
            lost = self._finish(tx, outcomes, progress, now)
            if claim is None:
                return lost, ClaimResult([])
            waited = time.monotonic() - asked
            if waited < CLAIM_WAIT_NOTED_S:
                return lost, self._claim(tx, claim)
            return lost, self._claim(tx, replace(claim, now=claim.now + waited,
                                                 lease_until=claim.lease_until + waited))

        return self.driver.write(go, relaxed=not outcomes)

    @abc.abstractmethod
    def _finish(
        self, tx: Tx, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float
    ) -> list[str]:
        """Write progress and outcomes (each guarded by its lease) in `tx`; returns the ids whose lease was lost.
        A dialect's own: statement by statement on SQLite, one function call on PostgreSQL."""

    def _claim(self, tx: Tx, params: ClaimParams) -> ClaimResult:
        """Promote due scheduled jobs, then claim up to `limit` ready jobs in priority order in `tx`."""
        array = self.driver.array
        queues = array(params.queues or None)
        tx.execute("promote_due", {"now": params.now})
        limited = self._limited_queues(tx, params)
        keyed_left = False
        if limited:
            rows, keyed_left = claim_with_limits(tx, params, limited, array, self._ready_in_groups)
        else:  # the common case: one statement
            rows = tx.rows(
                "claim_jobs",
                {
                    "worker_id": params.worker_id,
                    "now": params.now,
                    "lease_until": params.lease_until,
                    "queues": queues,
                    "types": array(params.types or None),
                    "limit": params.limit,
                },
            )
        next_run_at = None
        if len(rows) < params.limit:  # a full claim brings the worker back at once; only a short one needs to know
            next_run_at = tx.rows("next_run_at", {"queues": queues})[0][0]
        return ClaimResult(claimed_in_order(rows, params.worker_id, self._decode), next_run_at, keyed_left)

    def heartbeat(self, beat: WorkerBeat) -> list[str]:
        worker = {
            "id": beat.id,
            "host": beat.host,
            "pid": beat.pid,
            "queues": dumps(list(beat.queues)) if beat.queues else None,
            "slots": beat.slots,
            "started_at": beat.started_at,
            "now": beat.now,
            "lease_until": beat.lease_until,
            "types": dumps(list(beat.types)) if beat.types is not None else None,
        }
        holding = self.driver.array(beat.holding) if beat.holding is not None else None
        renew = {"worker_id": beat.id, "lease_until": beat.lease_until, "holding": holding}

        def go(tx: Tx) -> list[str]:
            tx.execute("upsert_worker", worker)
            tx.execute("renew_leases", renew)
            return [str(r[0]) for r in tx.rows("cancel_requests", {"worker_id": beat.id})]

        return self.driver.write(go, relaxed=True)

    def cancel_requests(self, worker_id: str) -> list[str]:
        return [str(r[0]) for r in self.driver.read(lambda tx: tx.rows("cancel_requests", {"worker_id": worker_id}))]

    def remove_worker(self, worker_id: str) -> None:
        self.driver.write(lambda tx: tx.execute("remove_worker", {"id": worker_id}))

    def register_tasks(self, tasks: Sequence[TaskInfo], now: float) -> None:
        rows = [{"name": t.name, "queue": t.queue, "priority": t.priority, "max_retries": t.max_retries,
                 "timeout": t.timeout, "now": now} for t in tasks]
        if rows:
            self.driver.write(lambda tx: tx.executemany("register_task", rows))

    # ------------------------------------------------------------------------------------------ maintenance
    def rescue_expired(self, now: float) -> int:
        if not self._maintains(now):
            return 0
        return self.driver.write(lambda tx: tx.execute("rescue_expired", {"now": now}))

    def prune(self, finished_before: float, now: float) -> int:
        if not self._maintains(now):
            return 0
        deleted = self._delete_in_batches("prune_finished", {"before": finished_before})
        self.driver.write(lambda tx: tx.execute("prune_workers", {"before": now - DEAD_WORKER_KEEP_S}))
        self.prune_groups(now - IDLE_GROUP_KEEP_S)
        return deleted

    def _delete_in_batches(self, query: str, params: dict[str, Any]) -> int:
        """Short transactions, so a big purge never holds many row locks (or the SQLite writer) for long."""
        total = 0
        while True:
            n = self.driver.write(lambda tx: tx.execute(query, {**params, "batch": DELETE_BATCH}))
            total += n
            if n < DELETE_BATCH:
                return total

    # ------------------------------------------------------------------------------------------ steering
    @staticmethod
    def _status_or_missing(tx: Tx, job_id: str) -> str:
        rows = tx.rows("job_status", {"id": job_id})
        if not rows:
            raise JobNotFoundError(job_id)
        return str(rows[0][0])

    def _job_in(self, tx: Tx, job_id: str) -> Job:
        return job_from_row(tx.dicts("get_job", {"id": job_id})[0], self._decode)

    def cancel_job(self, job_id: str, now: float, message: str = "cancelled") -> Job:
        if not is_uuid(job_id):
            raise JobNotFoundError(job_id)
        params = {"id": job_id, "now": now, "message": message}

        def go(tx: Tx) -> Job:
            if tx.execute("cancel_waiting_job", params) == 0 and tx.execute("request_cancel", params) == 0:
                status = self._status_or_missing(tx, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: only an open job can be cancelled")
            return self._job_in(tx, job_id)

        return self.driver.write(go)

    def retry_job(self, job_id: str, now: float) -> Job:
        if not is_uuid(job_id):
            raise JobNotFoundError(job_id)

        def go(tx: Tx) -> Job:
            if tx.execute("retry_job", {"id": job_id, "now": now}) == 0:
                status = self._status_or_missing(tx, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: only a failed or cancelled job can be retried")
            return self._job_in(tx, job_id)

        return self.driver.write(go)

    def delete_job(self, job_id: str) -> None:
        if not is_uuid(job_id):
            raise JobNotFoundError(job_id)

        def go(tx: Tx) -> None:
            if tx.execute("delete_job", {"id": job_id}) == 0:
                status = self._status_or_missing(tx, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: cancel it before deleting it")

        self.driver.write(go)

    def purge_jobs(self, statuses: Sequence[JobStatus], finished_before: float) -> int:
        params = {"statuses": self.driver.array([s.value for s in statuses]), "before": finished_before}
        return self._delete_in_batches("purge_jobs", params)

    # ------------------------------------------------------------------------------------------ change outbox
    def changes_since(self, after_id: int, limit: int = 1000) -> list[JobChange]:
        rows = self.driver.read(lambda tx: tx.rows("changes_since", {"after_id": after_id, "limit": limit}))
        return [JobChange(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def last_change_id(self) -> int:
        return int(self.driver.read(lambda tx: tx.rows("last_change_id"))[0][0])

    def prune_changes(self, before: float) -> int:
        if not self._leading():
            return 0
        return self.driver.write(lambda tx: tx.execute("prune_changes", {"before": before}))

    # ------------------------------------------------------------------------------------------ workers, stats
    def list_workers(self, now: float) -> list[WorkerInfo]:
        rows = self.driver.read(lambda tx: tx.dicts("live_workers", {"now": now}))
        return [worker_from_row(r, self._decode) for r in rows]

    def stats(self, now: float, window_s: float = 3600.0) -> Stats:
        since = now - window_s

        def go(tx: Tx) -> tuple[list[tuple[Any, ...]], ...]:
            return (
                tx.rows("counts_by_type"),
                tx.rows("recent_durations", {"since": since}),
                tx.rows("throughput", {"since": since}),
                tx.rows("live_worker_types", {"now": now}),
                tx.rows("count_workflows"),
            )

        by_type, durations, minutes, workers, flows = self.driver.read(go)
        types = [self._decode(r[0]) for r in workers]
        served = None if any(t is None for t in types) else {name for t in types for name in t}
        stats = Stats.from_rows(by_type, durations, minutes, len(workers), since, window_s, served)
        workflows = {s: 0 for s in WORKFLOW_STATUSES} | {str(s): int(n) for s, n in flows}
        return replace(stats, extra={**stats.extra, "workflows": workflows})
