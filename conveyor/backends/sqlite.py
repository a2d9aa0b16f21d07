"""The SQLite backend: one file, WAL mode, one writer connection per process, claims in `BEGIN IMMEDIATE`."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.backends.base import (
    Backend,
    Cancelled,
    ClaimedJob,
    ClaimParams,
    ClaimResult,
    Completed,
    Failed,
    JobChange,
    JobFilter,
    Lease,
    NewJob,
    Outcome,
    ProgressUpdate,
    QueueChange,
    Released,
    Stats,
    WorkerBeat,
)
from conveyor.backends.queries import load_queries, sql_text
from conveyor.errors import BackendError, ConfigError, InvalidArgumentsError, InvalidStateError, JobNotFoundError
from conveyor.job import (
    Job,
    JobEvent,
    JobPage,
    JobStatus,
    QueueInfo,
    WorkerInfo,
    to_datetime,
)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
CACHE_KIB = 65536  # page cache per connection: the hot part of a busy queue stays in memory
DELETE_BATCH = 1000
DEAD_WORKER_KEEP_S = 60.0
Q = load_queries("sqlite")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or `sqlite:///:memory:` -> the path sqlite3 opens."""
    if not url.startswith("sqlite://"):
        raise ConfigError(f"not a SQLite URL: {url!r}")
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigError(f"SQLite URL {url!r} names no file: use sqlite:///path/to/file.db")
    return path.split("?", 1)[0]


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        type=row["type"],
        queue=row["queue"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        args=_loads(row["args"]),
        result=_loads(row["result"]),
        error=row["error"],
        error_detail=row["error_detail"],
        progress=row["progress"],
        progress_info=_loads(row["progress_info"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        run_at=to_datetime(row["run_at"]),  # type: ignore[arg-type]
        tags=_loads(row["tags"]),
        metadata=_loads(row["metadata"]),
        unique_key=row["unique_key"],
        created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
        updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
        started_at=to_datetime(row["started_at"]),
        completed_at=to_datetime(row["completed_at"]),
        worker_id=row["worker_id"],
        cancel_requested=bool(row["cancel_requested"]),
    )


def _claimed(row: tuple[Any, ...], worker_id: str) -> ClaimedJob:
    job_id, type_, queue, priority, _run_at, _seq, args, attempts, base, max_retries, timeout = row
    return ClaimedJob(
        id=job_id,
        type=type_,
        queue=queue,
        priority=priority,
        args=json.loads(args),
        attempt=attempts,
        retries_used=attempts - base - 1,
        max_retries=max_retries,
        timeout=timeout,
        lease=Lease(worker_id, attempts),
    )


def _filter_params(params: JobFilter) -> dict[str, Any]:
    return {
        "statuses": _dumps([s.value for s in params.statuses]) if params.statuses else None,
        "type": params.type,
        "queue": params.queue,
        "tag": params.tag,
        "older_than": params.older_than,
    }


class SQLiteBackend(Backend):
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise ConfigError(f"SQLite {sqlite3.sqlite_version} is too old: Conveyor needs 3.35 or newer")
        self.url = url
        self.path = sqlite_path(url)
        self.memory = self.path == ":memory:"
        if not self.memory:
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"cannot open database {url!r}: directory {parent} does not exist")
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._local_writes = 0
        self._conn = self._connect()
        self._poll_conn: sqlite3.Connection | None = None if self.memory else self._connect()
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a commit survives a crash of any process; only an OS crash or power loss
            # may roll back the last commits. The enqueue rate is an order of magnitude higher than with FULL.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite database {self.url!r}: {exc}") from exc
        return conn

    # ------------------------------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                self._local_writes += 1
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    @staticmethod
    def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def migrate(self) -> None:
        statements: list[str] = []
        pending = ""
        for line in sql_text("sqlite_schema.sql").splitlines(keepends=True):
            pending += line
            if sqlite3.complete_statement(pending):
                statements.append(pending)
                pending = ""
        with self._write() as conn:
            for statement in statements:
                conn.execute(statement)
            version = conn.execute(Q["schema_version"]).fetchone()[0]
            if version is None:
                conn.execute(Q["set_schema_version"], {"version": SCHEMA_VERSION})
            elif version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the database has schema version {version}, newer than this Conveyor's {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._poll_conn is not None:
            with self._poll_lock:
                self._poll_conn.close()

    def change_token(self) -> int:
        if self._poll_conn is None:
            return self._local_writes
        with self._poll_lock:
            try:
                return int(self._poll_conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    # ------------------------------------------------------------------------------------------ producing
    def insert_jobs(self, jobs: Sequence[NewJob], now: float, connection: Any = None) -> list[Job]:
        if connection is not None:
            raise ConfigError("connection= (transactional enqueue) needs the PostgreSQL backend")
        shared: dict[int, str] = {}  # a batch shares its tags and metadata objects: encode each once

        def encode(value: Any) -> str:
            key = id(value)
            if key not in shared:
                shared[key] = _dumps(value)
            return shared[key]

        rows = [
            {
                "id": j.id,
                "type": j.type,
                "queue": j.queue,
                "status": "scheduled" if j.scheduled else "pending",
                "priority": j.priority,
                "args": _dumps(j.args),
                "max_retries": j.max_retries,
                "timeout": j.timeout,
                "run_at": j.run_at,
                "tags": encode(j.tags),
                "metadata": encode(j.metadata),
                "unique_key": j.unique_key,
                "now": now,
            }
            for j in jobs
        ]
        created_at = datetime.fromtimestamp(now, UTC)
        assert created_at is not None
        out: list[Job] = []
        with self._write() as conn:
            if all(j.unique_key is None for j in jobs):
                conn.executemany(Q["insert_job"], rows)
                return [j.as_job(created_at) for j in jobs]
            for job, row in zip(jobs, rows, strict=True):
                if conn.execute(Q["insert_job"], row).rowcount == 1:
                    out.append(job.as_job(created_at))
                    continue
                cur = conn.execute(Q["get_open_by_unique_key"], {"unique_key": job.unique_key})
                out.append(_job(self._dicts(cur)[0]))
        return out


    # ------------------------------------------------------------------------------------------ reading
    def get_job(self, job_id: str) -> Job | None:
        with self._read() as conn:
            rows = self._dicts(conn.execute(Q["get_job"], {"id": job_id}))
        return _job(rows[0]) if rows else None

    def list_jobs(self, params: JobFilter) -> JobPage:
        cursor = None
        if params.cursor is not None:
            try:
                cursor = int(params.cursor)
            except ValueError:
                raise InvalidArgumentsError(f"invalid cursor {params.cursor!r}") from None
        query = {**_filter_params(params), "cursor": cursor, "limit": params.limit + 1}
        with self._read() as conn:
            rows = self._dicts(conn.execute(Q["list_jobs"], query))
        more = len(rows) > params.limit
        rows = rows[: params.limit]
        return JobPage([_job(r) for r in rows], str(rows[-1]["seq"]) if more and rows else None)

    def select_ids(self, params: JobFilter) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute(Q["select_ids"], _filter_params(params)).fetchall()]

    def job_events(self, job_id: str) -> list[JobEvent]:
        with self._read() as conn:
            rows = self._dicts(conn.execute(Q["job_events"], {"id": job_id}))
        return [
            JobEvent(
                id=r["id"],
                job_id=r["job_id"],
                at=to_datetime(r["at"]),  # type: ignore[arg-type]
                from_status=JobStatus(r["from_status"]) if r["from_status"] else None,
                to_status=JobStatus(r["to_status"]),
                worker_id=r["worker_id"],
                message=r["message"],
            )
            for r in rows
        ]

    def has_ready_jobs(self, queues: tuple[str, ...] | None, now: float) -> bool:
        with self._read() as conn:
            row = conn.execute(Q["has_ready_jobs"], {"queues": _dumps(queues) if queues else None, "now": now})
            return bool(row.fetchone()[0])

    # ------------------------------------------------------------------------------------------ working
    def claim_jobs(self, params: ClaimParams) -> ClaimResult:
        with self._write() as conn:
            return self._claim(conn, params)

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult]:
        with self._write() as conn:
            if progress:
                conn.executemany(Q["write_progress"], self._progress_rows(progress, now))
            lost = self._finish(conn, outcomes, now)
            return lost, self._claim(conn, claim) if claim is not None else ClaimResult([])

    def _claim(self, conn: sqlite3.Connection, params: ClaimParams) -> ClaimResult:
        queues = _dumps(params.queues) if params.queues else None
        base = {
            "worker_id": params.worker_id,
            "now": params.now,
            "lease_until": params.lease_until,
            "types": _dumps(params.types) if params.types else None,
        }
        conn.execute(Q["promote_due"], {"now": params.now})
        limited = conn.execute(Q["limited_queues"]).fetchall()
        rows: list[tuple[Any, ...]]
        if not limited:  # the common case: one statement
            rows = conn.execute(Q["claim_jobs"], {**base, "queues": queues, "limit": params.limit}).fetchall()
        else:
            rows = self._claim_with_limits(conn, params, limited, queues, base)
        next_run_at = None
        if len(rows) < params.limit:
            next_run_at = conn.execute(Q["next_run_at"], {"queues": queues}).fetchone()[0]
        rows.sort(key=lambda r: (-r[3], r[4], r[5]))
        return ClaimResult([_claimed(r, params.worker_id) for r in rows], next_run_at)

    @staticmethod
    def _claim_with_limits(
        conn: sqlite3.Connection,
        params: ClaimParams,
        limited: list[tuple[Any, ...]],
        queues: str | None,
        base: dict[str, Any],
    ) -> list[tuple[Any, ...]]:
        """Candidates from the unlimited queues and from each limited queue up to what it allows now, then the best
        of all of them by priority: a limited queue's jobs must not jump ahead of better jobs elsewhere."""
        ready = {"queues": queues, "types": base["types"], "limit": params.limit}
        candidates = conn.execute(Q["ready_jobs"], ready).fetchall()
        windows: dict[str, tuple[float, int]] = {}
        for name, paused, concurrency, rate, window_start, window_count in limited:
            if paused or (params.queues and name not in params.queues):
                continue
            allowed = params.limit
            if concurrency is not None:
                running = conn.execute(Q["count_processing_in_queue"], {"queue": name}).fetchone()[0]
                allowed = min(allowed, concurrency - running)
            if rate is not None:
                window = max(1.0, 1.0 / rate) if rate > 0 else math.inf
                per_window = max(1, math.floor(rate * window)) if rate > 0 else 0
                if params.now - window_start >= window:
                    window_start, window_count = params.now, 0
                allowed = min(allowed, per_window - window_count)
            if allowed <= 0:
                continue
            if rate is not None:
                windows[name] = (window_start, window_count)
            candidates.extend(conn.execute(
                    Q["ready_jobs_in_queue"], {"queue": name, "types": base["types"], "limit": allowed}
                ).fetchall())
        candidates.sort(key=lambda c: (-c[2], c[3], c[0]))
        chosen = [c[0] for c in candidates[: params.limit]]
        if not chosen:
            return []
        rows = conn.execute(Q["claim_chosen"], {**base, "seqs": _dumps(chosen)}).fetchall()
        started = Counter(r[2] for r in rows)
        for name, (window_start, window_count) in windows.items():
            conn.execute(
                Q["record_queue_starts"],
                {"queue": name, "window_start": window_start, "window_count": window_count + started[name]},
            )
        return rows

    def finish_jobs(self, outcomes: Sequence[Outcome], now: float) -> list[str]:
        with self._write() as conn:
            return self._finish(conn, outcomes, now)

    @staticmethod
    def _finish(conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float) -> list[str]:
        lost: list[str] = []
        for outcome in outcomes:
            guard = {
                "id": outcome.job_id,
                "worker_id": outcome.lease.worker_id,
                "attempt": outcome.lease.attempt,
                "now": now,
            }
            match outcome:
                case Completed(result=result):
                    cur = conn.execute(Q["complete_job"], {**guard, "result": _dumps(result)})
                case Failed(error=error, detail=detail, retry_at=retry_at):
                    cur = conn.execute(
                        Q["fail_job"], {**guard, "error": error, "detail": detail, "retry_at": retry_at}
                    )
                case Cancelled(reason=reason):
                    cur = conn.execute(Q["cancel_running_job"], {**guard, "reason": reason})
                case Released(reason=reason):
                    cur = conn.execute(Q["release_job"], {**guard, "reason": reason})
            if cur.rowcount == 0:
                lost.append(outcome.job_id)
        return lost

    def write_progress(self, updates: Sequence[ProgressUpdate], now: float) -> None:
        with self._write() as conn:
            conn.executemany(Q["write_progress"], self._progress_rows(updates, now))

    @staticmethod
    def _progress_rows(updates: Sequence[ProgressUpdate], now: float) -> list[dict[str, Any]]:
        return [
            {
                "id": u.job_id,
                "worker_id": u.lease.worker_id,
                "attempt": u.lease.attempt,
                "progress": u.progress,
                "info": _dumps(u.info) if u.info is not None else None,
                "now": now,
            }
            for u in updates
        ]

    def heartbeat(self, beat: WorkerBeat) -> list[str]:
        with self._write() as conn:
            conn.execute(
                Q["upsert_worker"],
                {
                    "id": beat.id,
                    "host": beat.host,
                    "pid": beat.pid,
                    "queues": _dumps(beat.queues) if beat.queues else None,
                    "slots": beat.slots,
                    "started_at": beat.started_at,
                    "now": beat.now,
                    "lease_until": beat.lease_until,
                },
            )
            conn.execute(Q["renew_leases"], {"worker_id": beat.id, "lease_until": beat.lease_until})
            return [r[0] for r in conn.execute(Q["cancel_requests"], {"worker_id": beat.id}).fetchall()]

    def cancel_requests(self, worker_id: str) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute(Q["cancel_requests"], {"worker_id": worker_id}).fetchall()]

    def remove_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(Q["remove_worker"], {"id": worker_id})

    def rescue_expired(self, now: float) -> int:
        with self._write() as conn:
            return conn.execute(Q["rescue_expired"], {"now": now}).rowcount

    def prune(self, finished_before: float, now: float) -> int:
        deleted = self._delete_in_batches(Q["prune_finished"], {"before": finished_before})
        with self._write() as conn:
            conn.execute(Q["prune_workers"], {"before": now - DEAD_WORKER_KEEP_S})
        return deleted

    def _delete_in_batches(self, query: str, params: dict[str, Any]) -> int:
        total = 0
        while True:
            with self._write() as conn:
                n = conn.execute(query, {**params, "batch": DELETE_BATCH}).rowcount
            total += n
            if n < DELETE_BATCH:
                return total

    # ------------------------------------------------------------------------------------------ steering
    def _status_or_missing(self, conn: sqlite3.Connection, job_id: str) -> str:
        row = conn.execute(Q["job_exists"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return str(row[0])

    def cancel_job(self, job_id: str, now: float, message: str = "cancelled") -> Job:
        with self._write() as conn:
            params = {"id": job_id, "now": now, "message": message}
            if conn.execute(Q["cancel_waiting_job"], params).rowcount == 0:
                if conn.execute(Q["request_cancel"], params).rowcount == 0:
                    status = self._status_or_missing(conn, job_id)
                    raise InvalidStateError(f"job {job_id} is {status}: only an open job can be cancelled")
            row = self._dicts(conn.execute(Q["get_job"], {"id": job_id}))[0]
        return _job(row)

    def retry_job(self, job_id: str, now: float) -> Job:
        with self._write() as conn:
            if conn.execute(Q["retry_job"], {"id": job_id, "now": now}).rowcount == 0:
                status = self._status_or_missing(conn, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: only a failed or cancelled job can be retried")
            row = self._dicts(conn.execute(Q["get_job"], {"id": job_id}))[0]
        return _job(row)

    def delete_job(self, job_id: str) -> None:
        with self._write() as conn:
            if conn.execute(Q["delete_job"], {"id": job_id}).rowcount == 0:
                status = self._status_or_missing(conn, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: cancel it before deleting it")

    def purge_jobs(self, statuses: Sequence[JobStatus], finished_before: float) -> int:
        params = {"statuses": _dumps([s.value for s in statuses]), "before": finished_before}
        return self._delete_in_batches(Q["purge_jobs"], params)

    # ------------------------------------------------------------------------------------------ queues
    def list_queues(self) -> list[QueueInfo]:
        with self._read() as conn:
            settings = {r[0]: r for r in conn.execute(Q["queue_settings"]).fetchall()}
            counts: dict[str, dict[str, int]] = {}
            for queue, status, n in conn.execute(Q["queue_counts"]).fetchall():
                counts.setdefault(queue, {})[status] = n
        names = sorted(set(settings) | set(counts) | {"default"})
        out = []
        for name in names:
            _, paused, concurrency, rate = settings.get(name, (name, 0, None, None))
            out.append(QueueInfo(name, bool(paused), concurrency, rate, counts.get(name, {})))
        return out

    def set_queue(self, change: QueueChange, now: float) -> QueueInfo:
        with self._write() as conn:
            conn.execute(Q["ensure_queue"], {"name": change.name, "now": now})
            conn.execute(
                Q["update_queue"],
                {
                    "name": change.name,
                    "paused": None if change.paused is None else int(change.paused),
                    "concurrency": change.concurrency,
                    "rate_limit": change.rate_limit,
                    "clear_concurrency": change.clear_concurrency,
                    "clear_rate_limit": change.clear_rate_limit,
                    "now": now,
                },
            )
        return next(q for q in self.list_queues() if q.name == change.name)

    # ------------------------------------------------------------------------------------------ change outbox
    def changes_since(self, after_id: int, limit: int = 1000) -> list[JobChange]:
        with self._read() as conn:
            rows = conn.execute(Q["changes_since"], {"after_id": after_id, "limit": limit}).fetchall()
        return [JobChange(*r) for r in rows]

    def last_change_id(self) -> int:
        with self._read() as conn:
            return int(conn.execute(Q["last_change_id"]).fetchone()[0])

    def prune_changes(self, before: float) -> int:
        with self._write() as conn:
            return conn.execute(Q["prune_changes"], {"before": before}).rowcount

    # ------------------------------------------------------------------------------------------ workers, stats
    def list_workers(self, now: float) -> list[WorkerInfo]:
        with self._read() as conn:
            rows = self._dicts(conn.execute(Q["live_workers"], {"now": now}))
        return [
            WorkerInfo(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                queues=_loads(r["queues"]),
                slots=r["slots"],
                started_at=to_datetime(r["started_at"]),  # type: ignore[arg-type]
                heartbeat_at=to_datetime(r["heartbeat_at"]),  # type: ignore[arg-type]
                running=_loads(r["running"]) or [],
            )
            for r in rows
        ]

    def stats(self, now: float, window_s: float = 3600.0) -> Stats:
        since = now - window_s
        with self._read() as conn:
            by_type = conn.execute(Q["counts_by_type"]).fetchall()
            durations = conn.execute(Q["recent_durations"], {"since": since}).fetchall()
            minutes = conn.execute(Q["throughput"], {"since": since}).fetchall()
            workers = conn.execute(Q["count_live_workers"], {"now": now}).fetchone()[0]
        return Stats.from_rows(by_type, durations, minutes, workers, since, window_s)


