"""A worker's cycle as one call of the database function `conveyor_work` (migration 003): outcomes, progress and the
next claim in one round trip and one statement that is its own transaction, each batch sent as one JSON document."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg

from conveyor.backends.driver import dumps
from conveyor.backends.params import (
    Cancelled,
    ClaimParams,
    ClaimResult,
    Completed,
    Failed,
    Outcome,
    ProgressUpdate,
)
from conveyor.backends.postgres.driver import connection_lost
from conveyor.backends.rows import claimed_in_order
from conveyor.errors import BackendError


def _identity(value: Any) -> Any:
    return value


def work_params(
    outcomes: Sequence[Outcome], progress: Sequence[ProgressUpdate], now: float, claim: ClaimParams | None
) -> dict[str, Any]:
    """The parameters of the `work` query. Outcomes are grouped by kind and each batch is one JSON document (None:
    none of that kind): a C-speed `json` encode instead of adapting several arrays element by element."""
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
    params: dict[str, Any] = {kind: dumps(rows) if rows else None for kind, rows in batches.items()}
    params["progress"] = dumps(updates) if updates else None
    params["now"] = now
    if claim is None:
        params.update(worker_id=None, limit=0, lease_until=None, queues=None, types=None)
    else:
        params.update(
            worker_id=claim.worker_id,
            limit=claim.limit,
            lease_until=claim.lease_until,
            queues=list(claim.queues) if claim.queues else None,
            types=list(claim.types) if claim.types else None,
        )
    return params


def work_result(doc: dict[str, Any], claim: ClaimParams | None) -> tuple[list[str], ClaimResult]:
    """`conveyor_work`'s answer: the ids whose lease was lost, and the claimed jobs best first."""
    if claim is None:
        return doc["lost"], ClaimResult([])
    jobs = claimed_in_order(doc["jobs"], claim.worker_id, _identity)
    return doc["lost"], ClaimResult(jobs, doc.get("next_run_at"))


class LoopConnections:
    """One asyncio connection per event loop that runs worker cycles. Weak: a loop that ends without `close` is not
    kept alive here. A connection found dead (the database restarted since its last use) is replaced once."""

    def __init__(self, conninfo: str, work_sql: str) -> None:
        self.conninfo = conninfo
        self.work_sql = work_sql
        self.conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]] = (
            weakref.WeakKeyDictionary()
        )

    async def work(self, params: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            conn = self.conns.get(loop)
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                    self.conns[loop] = conn
                cur = await conn.execute(self.work_sql, params)
                row = await cur.fetchone()
            except psycopg.OperationalError as exc:
                if conn is not None:
                    await conn.close()
                if attempt == 1 and connection_lost(exc):
                    continue
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            except psycopg.Error as exc:
                raise BackendError(f"PostgreSQL error: {exc}") from exc
            assert row is not None
            doc: dict[str, Any] = row[0]
            return doc
        raise AssertionError("unreachable")

    async def close(self) -> None:
        conn = self.conns.pop(asyncio.get_running_loop(), None)
        if conn is not None:
            await conn.close()
