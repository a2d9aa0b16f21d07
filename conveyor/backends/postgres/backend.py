"""The PostgreSQL backend: the shared SQL backend over the psycopg driver, plus what only PostgreSQL does.

- A worker's cycle is one call of the database function `conveyor_work` (`work.py`), on the worker's event loop when
  it can (`finish_and_claim_async`); queues with a concurrency or rate limit take the shared locking claim instead.
- Batches go in by COPY (`copy.py`); enqueue can join the caller's own transaction (`connection=`).
- Idle workers wake on `LISTEN conveyor_ready` and live event streams on `conveyor_changes` (`listen.py`).
- Maintenance runs only in the process that holds the leader row (`leader.py`), so once across the cluster.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from conveyor.backends.driver import Tx, dumps, run_migrations
from conveyor.backends.params import ClaimParams, ClaimResult, NewJob, Outcome, ProgressUpdate
from conveyor.backends.postgres.copy import COPY_MIN_JOBS, copy_jobs, copy_many
from conveyor.backends.postgres.driver import POOL_MAX_SIZE, PostgresDriver, PostgresTx
from conveyor.backends.postgres.leader import Leadership
from conveyor.backends.postgres.listen import CHANGES_CHANNEL, READY_CHANNEL, Listener
from conveyor.backends.postgres.work import LoopConnections, work_params, work_result
from conveyor.backends.queries import load_migrations
from conveyor.backends.rows import job_from_row
from conveyor.backends.sql_backend import SQLBackend, insert_row, shared_encoder
from conveyor.job import Job

MIGRATIONS = load_migrations("postgres")
SCHEMA_VERSION = len(MIGRATIONS)
LIMITED_QUEUES_TTL_S = 1.0  # how long the list of queues with a concurrency or rate limit is cached


class PostgresBackend(SQLBackend):
    dialect = "postgres"
    driver: PostgresDriver

    def __init__(
        self,
        url: str,
        *,
        pool_max_size: int = POOL_MAX_SIZE,
        migrate: bool = True,
        connect_timeout_s: float | None = None,
    ) -> None:
        self.driver = PostgresDriver(url, pool_max_size=pool_max_size, connect_timeout_s=connect_timeout_s)
        self.url = url
        self.conninfo = self.driver.conninfo
        self.holder = f"{uuid.uuid4()}"
        self.leadership = Leadership(self.driver, self.holder)
        self._listener: Listener | None = None  # conveyor_ready, for workers
        self._changes: Listener | None = None  # conveyor_changes, for live event streams
        self._listener_lock = threading.Lock()
        self._limited: tuple[float, list[str]] = (-math.inf, [])
        self._loop_conns = LoopConnections(self.conninfo, self.driver.queries["work"])
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Apply the migrations this database lacks, in one transaction, under an advisory lock."""
        run_migrations(self.driver, MIGRATIONS)

    def close(self) -> None:
        with self._listener_lock:
            for listener in (self._listener, self._changes):
                if listener is not None:
                    listener.close()
            self._listener = self._changes = None
        self.leadership.resign()
        super().close()

    # ------------------------------------------------------------------------------------------ wake-ups
    def _listening(self, channel: str) -> Listener:
        with self._listener_lock:
            attr = "_listener" if channel == READY_CHANNEL else "_changes"
            listener: Listener | None = getattr(self, attr)
            if listener is None:
                listener = Listener(self.conninfo, channel)
                listener.connected.wait(5.0)
                setattr(self, attr, listener)
            return listener

    def wake_token(self) -> int:
        """Counts `conveyor_ready` notifications (a job became ready or scheduled, a queue changed): no query. Only
        these wake idle workers: a busy cluster's every commit would wake them for nothing."""
        listener = self._listener or self._listening(READY_CHANNEL)
        return listener.count

    def change_token(self) -> int:
        """Counts `conveyor_changes` notifications (any change of any job, committed by any process): no query. Its
        own connection starts at the first call, so only processes that follow live changes (the API) listen."""
        listener = self._changes or self._listening(CHANGES_CHANNEL)
        return listener.count

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Wake-ups by notification: `callback` runs in the listener thread after each `conveyor_ready`."""
        listener = self._listening(READY_CHANNEL)
        listener.callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listener.callbacks.remove(callback)

        return unsubscribe

    def listen(self, channel: str = CHANGES_CHANNEL) -> Listener:
        """A listener on another channel (`conveyor_changes` wakes live event streams); close it when done."""
        return Listener(self.conninfo, channel)

    # ------------------------------------------------------------------------------------------ producing
    def insert_jobs(self, jobs: Sequence[NewJob], now: float, connection: Any = None) -> list[Job]:
        """Insert in one statement (COPY for a big batch without unique keys). With `connection` (the caller's
        psycopg connection, transaction or cursor) the jobs are written in the caller's transaction."""
        if not jobs:
            return []
        if any(j.depends_on for j in jobs):
            return self.insert_graph(jobs, now, connection=connection)
        created_at = datetime.fromtimestamp(now, UTC)
        keyed = [j.unique_key for j in jobs if j.unique_key is not None]
        if connection is None and len(jobs) == 1 and not keyed:  # one statement, its own transaction
            self.driver.write_statement("insert_job", insert_row(jobs[0], now))
            return [jobs[0].as_job(created_at)]

        def go(tx: PostgresTx) -> list[Job]:
            if not keyed and len(jobs) >= COPY_MIN_JOBS and not any(j.webhook_url for j in jobs):
                # COPY: the fastest way in; with no unique key nothing can conflict, so every row goes in.
                return copy_jobs(tx.conn, jobs, now, created_at)
            if len(jobs) == 1:
                inserted = {str(r[0]) for r in tx.rows("insert_job", insert_row(jobs[0], now))}
            else:
                inserted = {str(r[0]) for r in tx.rows("insert_jobs", _insert_params(jobs, now))}
            existing: dict[str, Job] = {}
            if keyed and len(inserted) < len(jobs):
                for row in tx.dicts("get_open_by_unique_keys", {"unique_keys": keyed}):
                    existing[row["unique_key"]] = replace(job_from_row(row, self._decode), existing=True)
            # a job whose unique key an open job already holds is that job
            return [j.as_job(created_at) if j.id in inserted else existing[j.unique_key or ""] for j in jobs]

        return self._insert(go, connection)

    def insert_many(
        self, template: NewJob, payloads: Sequence[dict[str, Any]], now: float, connection: Any = None
    ) -> list[Job]:
        """A batch of one task with the same options: streamed in by COPY as its ids, rows and Job values are made,
        so the server works on the first rows while the client makes the next (see `copy_many`)."""
        if (template.unique_key is not None or template.depends_on or template.webhook_url is not None
                or len(payloads) < COPY_MIN_JOBS):
            return super().insert_many(template, payloads, now, connection)
        created_at = datetime.fromtimestamp(now, UTC)
        return self._insert(lambda tx: copy_many(tx.conn, template, payloads, now, created_at), connection)

    def _insert(self, go: Callable[[PostgresTx], list[Job]], connection: Any) -> list[Job]:
        if connection is None:
            return self.driver.write(go)
        return self.driver.in_callers(connection, go)

    # ------------------------------------------------------------------------------------------ working
    def finish_and_claim(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult]:
        """The common case is one call of `conveyor_work`: one round trip, one statement that is its own
        transaction. Queues with a concurrency or rate limit among the worker's need the shared locking claim in one
        transaction with the outcomes.

        A transaction without outcomes commits without waiting for the disk: should the database crash and lose it,
        a lost claim is the same as a worker that died before starting (the job is claimed and run again: at least
        once), and lost progress is only progress. Outcomes, enqueues and steering always wait for the disk, so no
        completed job runs again."""
        if self._limited_for(claim):
            return super().finish_and_claim(outcomes, progress, now, claim)
        params = work_params(outcomes, progress, now, claim)
        doc = self.driver.read(lambda tx: tx.rows("work", params))[0][0]
        return work_result(doc, claim)

    async def finish_and_claim_async(
        self, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
    ) -> tuple[list[str], ClaimResult] | None:
        """`finish_and_claim`'s one call of `conveyor_work`, on an asyncio connection of the running loop: a worker
        cycle without a hop to its database thread and back. None (use `finish_and_claim`) when the claim may need
        the locking path, or when the list of limited queues is due for a refresh (a blocking query)."""
        if self._limited_for(claim, refresh=False) != []:
            return None
        doc = await self._loop_conns.work(work_params(outcomes, progress, now, claim))
        return work_result(doc, claim)

    async def close_async(self) -> None:
        await self._loop_conns.close()

    def _finish(
        self, tx: Tx, outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float
    ) -> list[str]:
        if not outcomes and not progress:
            return []
        lost: list[str] = tx.rows("work", work_params(outcomes, progress, now, None))[0][0]["lost"]
        return lost

    def _claim(self, tx: Tx, params: ClaimParams) -> ClaimResult:
        tx.execute("claim_plan")
        return super()._claim(tx, params)

    def _ready_in_groups(self, tx: Tx, queue: str, keys: list[str], limits: list[int], types: Any) -> list[Any]:
        return tx.rows("ready_in_groups", {"queue": queue, "keys": keys, "limits": limits, "types": types})


    def _limited_queues(self, tx: Tx, claim: ClaimParams) -> list[str]:
        return self._limited_for(claim) or []

    def _limited_for(self, claim: ClaimParams | None, refresh: bool = True) -> list[str] | None:
        """The claim's queues that have a concurrency or rate limit, from a list cached for a second: the claim
        statement itself skips such queues (and paused ones) at once; this list only says which need the slower
        locking claim. None when the list is stale and `refresh` is off (refreshing it is a blocking query)."""
        if claim is None:
            return []
        at, names = self._limited
        if time.monotonic() - at > LIMITED_QUEUES_TTL_S:
            if not refresh:
                return None
            names = [r[0] for r in self.driver.read(lambda tx: tx.rows("limited_queues"))]
            self._limited = (time.monotonic(), names)
        return [q for q in names if not claim.queues or q in claim.queues]

    def _queues_changed(self) -> None:
        self._limited = (-math.inf, [])

    # ------------------------------------------------------------------------------------------ maintenance
    def is_leader(self, now: float) -> bool:
        """Take or renew the maintenance leadership; True while this backend holds it."""
        return self.leadership.take(now)

    def _maintains(self, now: float) -> bool:
        return self.leadership.take(now)

    def _leading(self) -> bool:
        return self.leadership.held


def _insert_params(jobs: Sequence[NewJob], now: float) -> dict[str, Any]:
    """`insert_jobs`' parameters: one array per column (one statement inserts the batch)."""
    encode = shared_encoder()
    return {
        "ids": [j.id for j in jobs],
        "types": [j.type for j in jobs],
        "queues": [j.queue for j in jobs],
        "statuses": ["scheduled" if j.scheduled else "pending" for j in jobs],
        "priorities": [j.priority for j in jobs],
        "args": [dumps(j.args) for j in jobs],
        "max_retries": [j.max_retries for j in jobs],
        "timeouts": [j.timeout for j in jobs],
        "run_ats": [j.run_at for j in jobs],
        "tags": [encode(j.tags) for j in jobs],
        "metadata": [encode(j.metadata) for j in jobs],
        "unique_keys": [j.unique_key for j in jobs],
        "group_keys": [j.group_key for j in jobs],
        "webhook_urls": [j.webhook_url for j in jobs],
        "now": now,
    }
