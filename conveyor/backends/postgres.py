"""The PostgreSQL backend: many worker processes on many hosts share one queue.

psycopg 3 with a connection pool; the interface is synchronous like the SQLite backend's (the worker calls it from
its database thread). Claims take several jobs in one `FOR UPDATE SKIP LOCKED` statement; a worker's cycle (outcomes,
progress, claim) is one transaction sent as one pipeline. Idle workers wake on `LISTEN conveyor_ready` (a dedicated
connection in a thread that reconnects by itself), with the worker's poll interval as the fallback. Maintenance
(rescue, prune) runs only in the backend that holds the leader row, so once across the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
    Stats,
    WorkerBeat,
)
from conveyor.backends.queries import load_queries, sql_text
from conveyor.errors import BackendError, ConfigError, InvalidArgumentsError, InvalidStateError, JobNotFoundError
from conveyor.ids import uuid7_many
from conveyor.job import Job, JobEvent, JobPage, JobStatus, QueueInfo, WorkerInfo, to_datetime

log = logging.getLogger("conveyor.postgres")
T = TypeVar("T")

SCHEMA_VERSION = 3
MIGRATION_LOCK_KEY = 0x636F6E76  # "conv": the advisory lock that serialises concurrent migrations
POOL_MAX_SIZE = 8
POOL_TIMEOUT_S = 30.0  # how long a call waits for a connection (covers a database restart)
DELETE_BATCH = 1000
COPY_MIN_JOBS = 50  # batches this big go in with COPY (no unique keys), smaller ones with one INSERT
DEAD_WORKER_KEEP_S = 60.0
LEADER_TTL_S = 15.0  # the longest a leader that stops renewing (dead, frozen, cut off) keeps the role
LEADER_TTL_MIN_S = 1.0
LEADER_TTL_FIRST_S = 5.0
LIMITED_QUEUES_TTL_S = 1.0  # how long the list of queues with a concurrency or rate limit is cached
WAKE_COOLDOWN_S = 0.01  # notifications closer than this wake a worker once (at the end of the cooldown)
LISTEN_WAIT_S = 0.25  # how long one wait for notifications lasts (a closing listener stops within it)
LISTEN_RECONNECT_S = (0.1, 0.2, 0.5, 1.0)  # back-off of the listener after losing its connection
READY_CHANNEL = "conveyor_ready"
CHANGES_CHANNEL = "conveyor_changes"
Q = load_queries("postgres")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=str(row["id"]),
        type=row["type"],
        queue=row["queue"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        args=row["args"],
        result=row["result"],
        error=row["error"],
        error_detail=row["error_detail"],
        progress=row["progress"],
        progress_info=row["progress_info"],
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        run_at=to_datetime(row["run_at"]),  # type: ignore[arg-type]
        tags=row["tags"],
        metadata=row["metadata"],
        unique_key=row["unique_key"],
        created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
        updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
        started_at=to_datetime(row["started_at"]),
        completed_at=to_datetime(row["completed_at"]),
        worker_id=row["worker_id"],
        cancel_requested=bool(row["cancel_requested"]),
    )


def _claimed(row: tuple[Any, ...], worker_id: str) -> ClaimedJob:
    job_id, type_, queue, priority, _run_at, args, attempts, base, max_retries, timeout = row
    return ClaimedJob(
        id=job_id,
        type=type_,
        queue=queue,
        priority=priority,
        args=args,
        attempt=attempts,
        retries_used=attempts - base - 1,
        max_retries=max_retries,
        timeout=timeout,
        lease=Lease(worker_id, attempts),
    )


def _filter_params(params: JobFilter) -> dict[str, Any]:
    return {
        "statuses": [s.value for s in params.statuses] if params.statuses else None,
        "type": params.type,
        "queue": params.queue,
        "tag": params.tag,
        "older_than": params.older_than,
    }


def _conninfo(url: str) -> str:
    """`postgres://` and `postgresql+psycopg://` are accepted spellings of `postgresql://`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not (scheme in {"postgres", "postgresql"} or scheme.startswith("postgresql+")):
        raise ConfigError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql://{rest}"


def connection_of(handle: Any) -> psycopg.Connection[Any]:
    """The psycopg connection behind what a caller passed as `connection=`: a connection, a transaction or a cursor."""
    if isinstance(handle, psycopg.Connection):
        return handle
    if isinstance(handle, psycopg.Transaction | psycopg.Cursor):
        return handle.connection
    raise ConfigError(
        f"connection= takes a psycopg (sync) Connection, Transaction or Cursor, not {type(handle).__name__}"
    )


class _Listener:
    """A dedicated connection that LISTENs on a channel in a daemon thread and counts notifications.

    The count is the worker's change token: reading it costs nothing. After losing its connection (a database restart)
    the thread reconnects with a short back-off and bumps the count, so workers look for work they may have missed.

    Debounced: the first notification wakes at once; more within `WAKE_COOLDOWN_S` are folded into one wake at the
    end of it. A stream of single enqueues then wakes each idle worker at most 1/WAKE_COOLDOWN_S times a second
    instead of once per job, while a lone job still starts without delay.
    """

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.count = 0
        self.callbacks: list[Callable[[], None]] = []
        self._last_wake = -math.inf
        self._pending = False
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=f"conveyor-listen-{channel}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    failures = 0
                    self._wake()  # (re)connected: whatever happened meanwhile may have made jobs ready
                    self.connected.set()
                    while not self._stop.is_set():
                        wait = LISTEN_WAIT_S
                        if self._pending:
                            wait = max(0.0, self._last_wake + WAKE_COOLDOWN_S - time.monotonic())
                        for _ in conn.notifies(timeout=wait):
                            self._notified()
                        if self._pending and time.monotonic() - self._last_wake >= WAKE_COOLDOWN_S:
                            self._wake()
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                self._wake()  # nudge workers to poll while the listener is down
                pause = LISTEN_RECONNECT_S[min(failures, len(LISTEN_RECONNECT_S) - 1)]
                failures += 1
                log.warning("listener on %s lost its connection (%s); reconnecting in %gs", self.channel, exc, pause)
                self._stop.wait(pause)
            finally:
                self._conn = None

    def _notified(self) -> None:
        if time.monotonic() - self._last_wake >= WAKE_COOLDOWN_S:
            self._wake()
        else:
            self._pending = True

    def _wake(self) -> None:
        self._pending = False
        self._last_wake = time.monotonic()
        self.count += 1
        for callback in list(self.callbacks):
            try:
                callback()
            except Exception:  # a closed event loop must not kill the listener
                log.debug("listener callback failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()  # the thread sees it within one LISTEN_WAIT_S
        self._thread.join(timeout=3.0)


class PostgresBackend(Backend):
    dialect = "postgres"

    def __init__(self, url: str, *, pool_max_size: int = POOL_MAX_SIZE, migrate: bool = True) -> None:
        self.url = url
        self.conninfo = _conninfo(url)
        self.holder = f"{uuid.uuid4()}"
        self._listener: _Listener | None = None  # conveyor_ready, for workers
        self._changes: _Listener | None = None  # conveyor_changes, for live event streams
        self._listener_lock = threading.Lock()
        self._leader_until = 0.0
        self._last_lead: float | None = None
        self._limited: tuple[float, list[str]] = (-math.inf, [])
        # finish_and_claim_async: one asyncio connection per event loop that runs worker cycles (weak: a loop that
        # ends without close_async does not stay referenced here)
        self._loop_conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]] = (
            weakref.WeakKeyDictionary()
        )
        try:
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=pool_max_size,
                kwargs={"autocommit": True},
                timeout=POOL_TIMEOUT_S,
                name="conveyor",
                open=False,
            )
            self._pool.open(wait=True, timeout=10.0)
        except (psycopg.Error, PoolTimeout) as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {url!r}: {exc}") from exc
        if migrate:
            self.migrate()

    # ------------------------------------------------------------------------------------------ plumbing
    def _run(
        self, fn: Callable[[psycopg.Connection[Any]], T], *, transaction: bool = True, pipeline: bool = False
    ) -> T:
        """Run `fn` on a pooled connection, in a transaction. A connection found dead (the database restarted) is
        replaced and the call tried once more, but only when nothing can have been committed. With `pipeline`, BEGIN,
        the statements and COMMIT travel together (`fn` fetching a result is what sends the batch so far)."""
        for attempt in (1, 2):
            body_done = False
            try:
                with self._pool.connection() as conn:
                    if pipeline:
                        with conn.pipeline(), conn.transaction():
                            result = fn(conn)
                            body_done = True
                    elif transaction:
                        with conn.transaction():
                            result = fn(conn)
                            body_done = True
                    else:
                        result = fn(conn)
                        body_done = True
                    return result
            except psycopg.OperationalError as exc:
                if attempt == 1 and not body_done and _connection_lost(exc):
                    self._pool.check()
                    continue
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            except psycopg.Error as exc:
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            except PoolTimeout as exc:
                raise BackendError(f"no PostgreSQL connection: {exc}") from exc
        raise AssertionError("unreachable")

    def _query(self, name: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        def go(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(Q[name], params).fetchall()

        return self._run(go, transaction=False)

    def _dicts(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        def go(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(Q[name], params).fetchall()

        return self._run(go, transaction=False)

    def migrate(self) -> None:
        """Apply the migrations this database lacks, in one transaction, under an advisory lock so that two
        processes starting at once do not race."""

        def go(conn: psycopg.Connection[Any]) -> None:
            conn.execute(Q["migration_lock"], {"key": MIGRATION_LOCK_KEY})
            conn.execute(Q["create_schema_table"])
            row = conn.execute(Q["schema_version"]).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the database has schema version {version}, newer than this Conveyor's {SCHEMA_VERSION}"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                conn.execute(sql_text(f"postgres_migration_{step:03d}.sql").encode())
                conn.execute(Q["set_schema_version"], {"version": step})
                log.info("PostgreSQL schema migrated to version %d", step)

        self._run(go)

    def close(self) -> None:
        with self._listener_lock:
            for listener in (self._listener, self._changes):
                if listener is not None:
                    listener.close()
            self._listener = self._changes = None
        if self._leader_until > 0:
            with contextlib.suppress(BackendError):
                self._run(lambda conn: conn.execute(Q["resign_leadership"], {"holder": self.holder}))
        self._pool.close()

    # ------------------------------------------------------------------------------------------ wake-ups
    def wake_token(self) -> int:
        """Counts `conveyor_ready` notifications (a job became ready or scheduled, a queue changed): no query. Only
        these wake idle workers: a busy cluster's every commit would wake them for nothing."""
        if self._listener is None:
            with self._listener_lock:
                if self._listener is None:
                    self._listener = _Listener(self.conninfo, READY_CHANNEL)
                    self._listener.connected.wait(5.0)
        return self._listener.count

    def change_token(self) -> int:
        """Counts `conveyor_changes` notifications (any change of any job, committed by any process): no query. Its
        own connection starts at the first call, so only processes that follow live changes (the API) listen."""
        if self._changes is None:
            with self._listener_lock:
                if self._changes is None:
                    self._changes = _Listener(self.conninfo, CHANGES_CHANNEL)
                    self._changes.connected.wait(5.0)
        return self._changes.count

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Wake-ups by notification: `callback` runs in the listener thread after each `conveyor_ready`."""
        self.wake_token()  # starts the listener
        listener = self._listener
        assert listener is not None
        listener.callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listener.callbacks.remove(callback)

        return unsubscribe

    def listen(self, channel: str = CHANGES_CHANNEL) -> _Listener:
        """A listener on another channel (`conveyor_changes` wakes live event streams); close it when done."""
        return _Listener(self.conninfo, channel)

    # ------------------------------------------------------------------------------------------ producing
    def insert_jobs(self, jobs: Sequence[NewJob], now: float, connection: Any = None) -> list[Job]:
        """Insert in one statement. With `connection` (the caller's psycopg connection, transaction or cursor) the
        jobs are written in the caller's transaction: they exist only if it commits."""
        if not jobs:
            return []
        created_at = datetime.fromtimestamp(now, UTC)
        keyed = [j.unique_key for j in jobs if j.unique_key is not None]

        def go(conn: psycopg.Connection[Any]) -> list[Job]:
            if not keyed and len(jobs) >= COPY_MIN_JOBS:
                # COPY: the fastest way in; with no unique key nothing can conflict, so every row goes in.
                return _copy_jobs(conn, jobs, now, created_at)
            with conn.cursor(row_factory=tuple_row) as cur:
                if len(jobs) == 1:
                    cur.execute(Q["insert_job"], _insert_one(jobs[0], now))
                else:
                    cur.execute(Q["insert_jobs"], _insert_params(jobs, now))
                inserted = {str(r[0]) for r in cur.fetchall()}
            existing: dict[str, Job] = {}
            if keyed and len(inserted) < len(jobs):
                with conn.cursor(row_factory=dict_row) as cur:
                    for row in cur.execute(Q["get_open_by_unique_keys"], {"unique_keys": keyed}).fetchall():
                        existing[row["unique_key"]] = _job(row)
            # a job whose unique key an open job already holds is that job
            return [j.as_job(created_at) if j.id in inserted else existing[j.unique_key or ""] for j in jobs]

        return self._write(go, bool(keyed), connection)

    def insert_many(
        self, template: NewJob, payloads: Sequence[dict[str, Any]], now: float, connection: Any = None
    ) -> list[Job]:
        """A batch of one task with the same options: streamed in by COPY as its ids, rows and Job values are made,
        so the server works on the first rows while the client makes the next (see `_copy_many`)."""
        if template.unique_key is not None or len(payloads) < COPY_MIN_JOBS:
            return super().insert_many(template, payloads, now, connection)
        created_at = datetime.fromtimestamp(now, UTC)
        return self._write(lambda conn: _copy_many(conn, template, payloads, now, created_at), False, connection)

    def _write(self, go: Callable[[psycopg.Connection[Any]], T], transaction: bool, connection: Any) -> T:
        """Run an insert on a pooled connection, or with `connection` in the caller's transaction."""
        if connection is None:
            return self._run(go, transaction=transaction)  # one statement is a transaction of its own
        conn = connection_of(connection)
        try:
            if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
                # The insert opens the caller's transaction (as any statement would): it commits or rolls back
                # with the caller's `commit()`/`rollback()`. A transaction block here would commit it at once.
                return go(conn)
            with conn.transaction():  # a savepoint in the caller's transaction block (or, in autocommit
                return go(conn)  # mode outside one, a transaction of its own)
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL error: {exc}") from exc

    # ------------------------------------------------------------------------------------------ reading
    def get_job(self, job_id: str) -> Job | None:
        if not _is_uuid(job_id):
            return None
        rows = self._dicts("get_job", {"id": job_id})
        return _job(rows[0]) if rows else None

    def list_jobs(self, params: JobFilter) -> JobPage:
        if params.cursor is not None and not _is_uuid(params.cursor):
            raise InvalidArgumentsError(f"invalid cursor {params.cursor!r}")
        rows = self._dicts("list_jobs", {**_filter_params(params), "cursor": params.cursor, "limit": params.limit + 1})
        more = len(rows) > params.limit
        rows = rows[: params.limit]
        return JobPage([_job(r) for r in rows], str(rows[-1]["id"]) if more and rows else None)

    def select_ids(self, params: JobFilter) -> list[str]:
        return [r[0] for r in self._query("select_ids", _filter_params(params))]

    def job_events(self, job_id: str) -> list[JobEvent]:
        if not _is_uuid(job_id):
            return []
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
            for r in self._dicts("job_events", {"id": job_id})
        ]

    def has_ready_jobs(self, queues: tuple[str, ...] | None, now: float) -> bool:
        rows = self._query("has_ready_jobs", {"queues": list(queues) if queues else None, "now": now})
        return bool(rows[0][0])

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
        """A worker's cycle: progress, outcomes, then the claim, in one transaction.

        The common case is one call of the database function `conveyor_work` (migration 3): one round trip, one
        statement that is its own transaction, each batch sent as one JSON document. Queues with a concurrency or rate
        limit among the worker's need the per-queue locking claim (`_claim_with_limits`) in the same transaction.

        A transaction without outcomes commits without waiting for the disk: should the database crash and lose it,
        a lost claim is the same as a worker that died before starting (the job is claimed and run again: at least
        once), and lost progress is only progress. Outcomes, enqueues and steering always wait for the disk, so no
        completed job runs again."""
        batches = _work_batches(outcomes, progress)
        limited = self._limited_for(claim)
        if not limited:
            work = {**batches, "now": now, **_claim_params(claim)}
            doc = self._run(lambda conn: conn.execute(Q["work"], work).fetchone(), transaction=False)
            assert doc is not None
            return doc[0]["lost"], _claim_result(doc[0], claim)

        def go(conn: psycopg.Connection[Any]) -> tuple[list[str], ClaimResult]:
            assert claim is not None
            lost: list[str] = []
            if any(v is not None for v in batches.values()):
                cur = conn.execute(Q["work"], {**batches, "now": now, **_claim_params(None)})
                lost = cur.fetchone()[0]["lost"]  # type: ignore[index]
            else:
                conn.execute(Q["relaxed_commit"])
            return lost, self._claim_with_limits(conn, claim, limited)

        return self._run(go, pipeline=True)

    async def finish_and_claim_async(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult] | None:
        """`finish_and_claim`'s one call of `conveyor_work`, on an asyncio connection of the running loop: a worker
        cycle without a hop to its database thread and back. None (use `finish_and_claim`) when the claim may need
        the per-queue locking path, or when the list of limited queues is due for a refresh (a blocking query)."""
        if self._limited_for(claim, refresh=False) != []:  # limited queues, or a list to refresh first
            return None
        work = {**_work_batches(outcomes, progress), "now": now, **_claim_params(claim)}
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            conn = self._loop_conns.get(loop)
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                    self._loop_conns[loop] = conn
                cur = await conn.execute(Q["work"], work)
                row = await cur.fetchone()
            except psycopg.OperationalError as exc:
                if conn is not None:
                    await conn.close()
                if attempt == 1 and _connection_lost(exc):
                    continue  # the database restarted since this connection's last use: one more try on a new one
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            except psycopg.Error as exc:
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            assert row is not None
            return row[0]["lost"], _claim_result(row[0], claim)
        raise AssertionError("unreachable")

    async def close_async(self) -> None:
        conn = self._loop_conns.pop(asyncio.get_running_loop(), None)
        if conn is not None:
            await conn.close()

    def _limited_for(self, claim: ClaimParams | None, refresh: bool = True) -> list[str] | None:
        """The claim's queues that have a concurrency or rate limit, from a list cached for a second: the claim
        statement itself skips such queues (and paused ones) at once; this list only says which need the slower
        per-queue claim. None when the list is stale and `refresh` is off (refreshing it is a blocking query)."""
        if claim is None:
            return []
        at, names = self._limited
        if time.monotonic() - at > LIMITED_QUEUES_TTL_S:
            if not refresh:
                return None
            names = [r[0] for r in self._query("limited_queues")]
            self._limited = (time.monotonic(), names)
        return [q for q in names if not claim.queues or q in claim.queues]

    @staticmethod
    def _claim_with_limits(conn: psycopg.Connection[Any], params: ClaimParams, limited: list[str]) -> ClaimResult:
        """Each limited queue's row stays locked until commit, so concurrent claims in it take turns and its
        concurrency and rate limits hold across all workers; one statement then claims the best candidates."""
        queues = list(params.queues) if params.queues else None
        base = {
            "worker_id": params.worker_id,
            "now": params.now,
            "lease_until": params.lease_until,
            "queues": queues,
            "types": list(params.types) if params.types else None,
            "limit": params.limit,
        }
        conn.execute(Q["claim_plan"])
        conn.execute(Q["promote_due"], {"now": params.now})
        allowed: dict[str, int] = {}
        windows: dict[str, tuple[float, int]] = {}
        for name in limited:  # sorted by name: every worker locks queue rows in the same order
            row = conn.execute(Q["lock_queue"], {"queue": name}).fetchone()
            if row is None or row[0]:  # gone, or paused meanwhile
                continue
            _, concurrency, rate, window_start, window_count = row
            n = params.limit
            if concurrency is not None:
                running = conn.execute(Q["count_processing_in_queue"], {"queue": name}).fetchone()
                n = min(n, concurrency - (running[0] if running else 0))
            if rate is not None:
                window = max(1.0, 1.0 / rate) if rate > 0 else math.inf
                per_window = max(1, math.floor(rate * window)) if rate > 0 else 0
                if params.now - window_start >= window:
                    window_start, window_count = params.now, 0
                n = min(n, per_window - window_count)
                windows[name] = (window_start, window_count)
            if n > 0:
                allowed[name] = n
        rows = conn.execute(
            Q["claim_jobs_with_limits"], {**base, "limited": list(allowed), "allowed": list(allowed.values())}
        ).fetchall()
        started = Counter(r[2] for r in rows)
        for name, (window_start, window_count) in windows.items():
            if started[name] or window_count == 0:
                conn.execute(
                    Q["record_queue_starts"],
                    {"queue": name, "window_start": window_start, "window_count": window_count + started[name]},
                )
        next_run_at = None
        if len(rows) < params.limit:  # a full claim brings the worker back at once; only a short one needs to know
            row = conn.execute(Q["next_run_at"], {"queues": queues}).fetchone()
            next_run_at = row[0] if row else None
        jobs = sorted(rows, key=lambda r: (-r[3], r[4], r[0]))
        return ClaimResult([_claimed(r, params.worker_id) for r in jobs], next_run_at)

    def heartbeat(self, beat: WorkerBeat) -> list[str]:
        def go(conn: psycopg.Connection[Any]) -> list[str]:
            conn.execute(Q["relaxed_commit"])
            conn.execute(
                Q["upsert_worker"],
                {
                    "id": beat.id,
                    "host": beat.host,
                    "pid": beat.pid,
                    "queues": _dumps(list(beat.queues)) if beat.queues else None,
                    "slots": beat.slots,
                    "started_at": beat.started_at,
                    "now": beat.now,
                    "lease_until": beat.lease_until,
                },
            )
            holding = list(beat.holding) if beat.holding is not None else None
            conn.execute(Q["renew_leases"], {"worker_id": beat.id, "lease_until": beat.lease_until, "holding": holding})
            cur = conn.execute(Q["cancel_requests"], {"worker_id": beat.id})
            return [r[0] for r in cur.fetchall()]

        return self._run(go, pipeline=True)

    def cancel_requests(self, worker_id: str) -> list[str]:
        return [r[0] for r in self._query("cancel_requests", {"worker_id": worker_id})]

    def remove_worker(self, worker_id: str) -> None:
        self._run(lambda conn: conn.execute(Q["remove_worker"], {"id": worker_id}), transaction=False)

    # ------------------------------------------------------------------------------------------ maintenance
    def is_leader(self, now: float) -> bool:
        """Take or renew the maintenance leadership; True while this backend holds it. Every worker calls the
        maintenance methods, but only the leader's calls do the work, so it runs once across the cluster.

        The leadership lasts three times the interval between this backend's calls (1 to 15 s): a leader that stops
        calling (killed, frozen, cut off) is replaced about as fast as the lease of its jobs runs out."""
        if self._last_lead is not None and 0 <= now - self._last_lead < LEADER_TTL_MIN_S and self._leader_until > now:
            return True  # renewed a moment ago (rescue and prune run in the same maintenance tick)
        ttl = LEADER_TTL_FIRST_S if self._last_lead is None else 3 * (now - self._last_lead)
        ttl = min(LEADER_TTL_S, max(LEADER_TTL_MIN_S, ttl))
        self._last_lead = now
        params = {"role": "maintenance", "holder": self.holder, "until": now + ttl, "now": now}
        rows = self._run(lambda conn: conn.execute(Q["take_leadership"], params).fetchall(), transaction=False)
        self._leader_until = now + ttl if rows else 0.0
        return bool(rows)

    def rescue_expired(self, now: float) -> int:
        if not self.is_leader(now):
            return 0
        return self._run(lambda conn: conn.execute(Q["rescue_expired"], {"now": now}).rowcount)

    def prune(self, finished_before: float, now: float) -> int:
        if not self.is_leader(now):
            return 0
        deleted = self._delete_in_batches("prune_finished", {"before": finished_before})
        self._run(lambda conn: conn.execute(Q["prune_workers"], {"before": now - DEAD_WORKER_KEEP_S}))
        return deleted

    def _delete_in_batches(self, name: str, params: dict[str, Any]) -> int:
        """Short transactions, so a big purge never holds many row locks or blocks vacuum for long."""
        total = 0
        while True:
            n = self._run(lambda conn: conn.execute(Q[name], {**params, "batch": DELETE_BATCH}).rowcount)
            total += n
            if n < DELETE_BATCH:
                return total

    # ------------------------------------------------------------------------------------------ steering
    @staticmethod
    def _status_or_missing(conn: psycopg.Connection[Any], job_id: str) -> str:
        row = conn.execute(Q["job_status"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return str(row[0])

    def _get_in(self, conn: psycopg.Connection[Any], job_id: str) -> Job:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(Q["get_job"], {"id": job_id}).fetchone()
        assert row is not None
        return _job(row)

    def cancel_job(self, job_id: str, now: float, message: str = "cancelled") -> Job:
        if not _is_uuid(job_id):
            raise JobNotFoundError(job_id)

        def go(conn: psycopg.Connection[Any]) -> Job:
            params = {"id": job_id, "now": now, "message": message}
            if conn.execute(Q["cancel_waiting_job"], params).rowcount == 0:
                if conn.execute(Q["request_cancel"], params).rowcount == 0:
                    status = self._status_or_missing(conn, job_id)
                    raise InvalidStateError(f"job {job_id} is {status}: only an open job can be cancelled")
            return self._get_in(conn, job_id)

        return self._run(go)

    def retry_job(self, job_id: str, now: float) -> Job:
        if not _is_uuid(job_id):
            raise JobNotFoundError(job_id)

        def go(conn: psycopg.Connection[Any]) -> Job:
            if conn.execute(Q["retry_job"], {"id": job_id, "now": now}).rowcount == 0:
                status = self._status_or_missing(conn, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: only a failed or cancelled job can be retried")
            return self._get_in(conn, job_id)

        return self._run(go)

    def delete_job(self, job_id: str) -> None:
        if not _is_uuid(job_id):
            raise JobNotFoundError(job_id)

        def go(conn: psycopg.Connection[Any]) -> None:
            if conn.execute(Q["delete_job"], {"id": job_id}).rowcount == 0:
                status = self._status_or_missing(conn, job_id)
                raise InvalidStateError(f"job {job_id} is {status}: cancel it before deleting it")

        self._run(go)

    def purge_jobs(self, statuses: Sequence[JobStatus], finished_before: float) -> int:
        return self._delete_in_batches(
            "purge_jobs", {"statuses": [s.value for s in statuses], "before": finished_before}
        )

    # ------------------------------------------------------------------------------------------ queues
    def list_queues(self) -> list[QueueInfo]:
        def go(conn: psycopg.Connection[Any]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            with conn.pipeline():
                settings = conn.execute(Q["queue_settings"])
                counts = conn.execute(Q["queue_counts"])
                return settings.fetchall(), counts.fetchall()

        settings_rows, count_rows = self._run(go)
        settings = {r[0]: r for r in settings_rows}
        counts: dict[str, dict[str, int]] = {}
        for queue, status, n in count_rows:
            counts.setdefault(queue, {})[status] = n
        out = []
        for name in sorted(set(settings) | set(counts) | {"default"}):
            _, paused, concurrency, rate = settings.get(name, (name, False, None, None))
            out.append(QueueInfo(name, bool(paused), concurrency, rate, counts.get(name, {})))
        return out

    def set_queue(self, change: QueueChange, now: float) -> QueueInfo:
        def go(conn: psycopg.Connection[Any]) -> None:
            conn.execute(Q["ensure_queue"], {"name": change.name, "now": now})
            conn.execute(
                Q["update_queue"],
                {
                    "name": change.name,
                    "paused": change.paused,
                    "concurrency": change.concurrency,
                    "rate_limit": change.rate_limit,
                    "clear_concurrency": change.clear_concurrency,
                    "clear_rate_limit": change.clear_rate_limit,
                    "now": now,
                },
            )

        self._run(go)
        self._limited = (-math.inf, [])
        return next(q for q in self.list_queues() if q.name == change.name)

    # ------------------------------------------------------------------------------------------ change outbox
    def changes_since(self, after_id: int, limit: int = 1000) -> list[JobChange]:
        rows = self._query("changes_since", {"after_id": after_id, "limit": limit})
        return [JobChange(*r) for r in rows]

    def last_change_id(self) -> int:
        return int(self._query("last_change_id")[0][0])

    def prune_changes(self, before: float) -> int:
        if self._leader_until <= 0:
            return 0
        return self._run(lambda conn: conn.execute(Q["prune_changes"], {"before": before}).rowcount)

    # ------------------------------------------------------------------------------------------ workers, stats
    def list_workers(self, now: float) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                queues=r["queues"],
                slots=r["slots"],
                started_at=to_datetime(r["started_at"]),  # type: ignore[arg-type]
                heartbeat_at=to_datetime(r["heartbeat_at"]),  # type: ignore[arg-type]
                running=list(r["running"]),
            )
            for r in self._dicts("live_workers", {"now": now})
        ]

    def stats(self, now: float, window_s: float = 3600.0) -> Stats:
        since = now - window_s

        def go(conn: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
            with conn.pipeline():
                curs = [
                    conn.execute(Q["counts_by_type"]),
                    conn.execute(Q["recent_durations"], {"since": since}),
                    conn.execute(Q["throughput"], {"since": since}),
                    conn.execute(Q["count_live_workers"], {"now": now}),
                ]
                return [c.fetchall() for c in curs]

        by_type_rows, duration_rows, minutes, workers = self._run(go, transaction=False)
        return Stats.from_rows(by_type_rows, duration_rows, minutes, workers[0][0], since, window_s)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COPY_CHUNK_JOBS = 200  # rows per write: the server parses one chunk while the next is encoded


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return repr(value) if isinstance(value, float) else str(value)


def _copy_shared(job: NewJob, now: float) -> str:
    """The end of a COPY row (`copy_jobs`: id and args come first), from the columns a batch's jobs share."""
    status = "scheduled" if job.scheduled else "pending"
    fields = (job.type, job.queue, status, job.priority, job.max_retries, job.timeout, job.run_at, _dumps(job.tags),
              _dumps(job.metadata))
    return "\t" + "\t".join(map(_copy_field, fields)) + f"\t{now!r}\t{now!r}\n"


def _copy_args(args: dict[str, Any]) -> str:
    text = _dumps(args)  # JSON escapes tabs and newlines itself: only backslashes need COPY's escape
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_many(
    conn: psycopg.Connection[Any], template: NewJob, payloads: Sequence[dict[str, Any]], now: float,
    created_at: datetime,
) -> list[Job]:
    """COPY a batch that shares `template`'s options. The rows go out chunk by chunk as they are made (the server
    parses one chunk while the next is encoded); the Job values are built after the last chunk, while the server
    still parses, and before the end of the COPY (after which it runs the insert trigger and commits)."""
    shared = _copy_shared(template, now)
    ids: list[str] = []
    with conn.cursor() as cur, cur.copy(Q["copy_jobs"]) as copy:
        for start in range(0, len(payloads), COPY_CHUNK_JOBS):
            chunk = payloads[start : start + COPY_CHUNK_JOBS]
            chunk_ids = uuid7_many(len(chunk))
            rows = [f"{job_id}\t{_copy_args(args)}{shared}" for job_id, args in zip(chunk_ids, chunk, strict=True)]
            copy.write("".join(rows))
            ids.extend(chunk_ids)
        return [template.as_job(created_at, job_id, args) for job_id, args in zip(ids, payloads, strict=True)]


def _copy_jobs(conn: psycopg.Connection[Any], jobs: Sequence[NewJob], now: float, created_at: datetime) -> list[Job]:
    """COPY jobs of any options (`enqueue_batch`): the shared columns are encoded once per distinct combination."""
    shared: dict[tuple[Any, ...], str] = {}
    with conn.cursor() as cur, cur.copy(Q["copy_jobs"]) as copy:
        for start in range(0, len(jobs), COPY_CHUNK_JOBS):
            chunk = jobs[start : start + COPY_CHUNK_JOBS]
            rows = []
            for j in chunk:
                key = (j.type, j.queue, j.scheduled, j.priority, j.max_retries, j.timeout, j.run_at, id(j.tags),
                       id(j.metadata))
                rest = shared.get(key)
                if rest is None:
                    rest = shared[key] = _copy_shared(j, now)
                rows.append(f"{j.id}\t{_copy_args(j.args)}{rest}")
            copy.write("".join(rows))
        return [j.as_job(created_at) for j in jobs]  # while the server parses the last rows (see _copy_many)


def _insert_one(job: NewJob, now: float) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "status": "scheduled" if job.scheduled else "pending",
        "priority": job.priority,
        "args": _dumps(job.args),
        "max_retries": job.max_retries,
        "timeout": job.timeout,
        "run_at": job.run_at,
        "tags": _dumps(job.tags),
        "metadata": _dumps(job.metadata),
        "unique_key": job.unique_key,
        "now": now,
    }


def _insert_params(jobs: Sequence[NewJob], now: float) -> dict[str, Any]:
    shared: dict[int, str] = {}  # a batch shares its tags and metadata objects: encode each once

    def encode(value: Any) -> str:
        key = id(value)
        if key not in shared:
            shared[key] = _dumps(value)
        return shared[key]

    return {
        "ids": [j.id for j in jobs],
        "types": [j.type for j in jobs],
        "queues": [j.queue for j in jobs],
        "statuses": ["scheduled" if j.scheduled else "pending" for j in jobs],
        "priorities": [j.priority for j in jobs],
        "args": [_dumps(j.args) for j in jobs],
        "max_retries": [j.max_retries for j in jobs],
        "timeouts": [j.timeout for j in jobs],
        "run_ats": [j.run_at for j in jobs],
        "tags": [encode(j.tags) for j in jobs],
        "metadata": [encode(j.metadata) for j in jobs],
        "unique_keys": [j.unique_key for j in jobs],
        "now": now,
    }


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """Whether the error means the server went away (restart, network), not a failed statement."""
    return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True



def _claim_params(claim: ClaimParams | None) -> dict[str, Any]:
    if claim is None:
        return {"worker_id": None, "limit": 0, "lease_until": None, "queues": None, "types": None}
    return {
        "worker_id": claim.worker_id,
        "limit": claim.limit,
        "lease_until": claim.lease_until,
        "queues": list(claim.queues) if claim.queues else None,
        "types": list(claim.types) if claim.types else None,
    }


def _claim_result(doc: dict[str, Any], claim: ClaimParams | None) -> ClaimResult:
    """`conveyor_work`'s claimed rows, best first (the database returns them in no particular order)."""
    if claim is None:
        return ClaimResult([])
    rows = sorted(doc["jobs"], key=lambda r: (-r[3], r[4], r[0]))
    return ClaimResult([_claimed(r, claim.worker_id) for r in rows], doc.get("next_run_at"))


def _work_batches(outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate]) -> dict[str, str | None]:
    """Outcomes grouped by kind and progress updates, each batch one JSON document (None: none of that kind) for
    `conveyor_work`: a C-speed `json` encode instead of adapting several arrays element by element."""
    batches: dict[str, list[dict[str, Any]]] = {"completed": [], "failed": [], "cancelled": [], "released": []}
    for o in outcomes:
        row: dict[str, Any] = {"id": o.job_id, "worker_id": o.lease.worker_id, "attempt": o.lease.attempt}
        if isinstance(o, Completed):
            row["result"] = o.result
            batches["completed"].append(row)
        elif isinstance(o, Failed):
            row.update(error=o.error, detail=o.detail, retry_at=o.retry_at)
            batches["failed"].append(row)
        elif isinstance(o, Cancelled):
            row["reason"] = o.reason
            batches["cancelled"].append(row)
        else:
            row["reason"] = o.reason
            batches["released"].append(row)
    updates = [
        {"id": u.job_id, "worker_id": u.lease.worker_id, "attempt": u.lease.attempt, "progress": u.progress,
         "info": u.info}
        for u in progress
    ]
    encoded = {kind: _dumps(rows) if rows else None for kind, rows in batches.items()}
    encoded["progress"] = _dumps(updates) if updates else None
    return encoded
