"""COPY: the fastest way a batch of jobs goes in. Rows are written chunk by chunk as they are made, so the server
parses one chunk while the client encodes the next."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from conveyor.backends.driver import dumps as _dumps
from conveyor.backends.params import NewJob
from conveyor.backends.queries import load_queries
from conveyor.ids import uuid7_many
from conveyor.job import Job

COPY_MIN_JOBS = 50  # batches this big go in with COPY (no unique keys), smaller ones with one INSERT
COPY_SQL = load_queries("postgres")["copy_jobs"]
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
              _dumps(job.metadata), job.group_key)
    return "\t" + "\t".join(map(_copy_field, fields)) + f"\t{now!r}\t{now!r}\n"


def _copy_args(args: dict[str, Any]) -> str:
    text = _dumps(args)  # JSON escapes tabs and newlines itself: only backslashes need COPY's escape
    return text.replace("\\", "\\\\") if "\\" in text else text


def copy_many(
    conn: psycopg.Connection[Any], template: NewJob, payloads: Sequence[dict[str, Any]], now: float,
    created_at: datetime,
) -> list[Job]:
    """COPY a batch that shares `template`'s options. The rows go out chunk by chunk as they are made (the server
    parses one chunk while the next is encoded); the Job values are built after the last chunk, while the server
    still parses, and before the end of the COPY (after which it runs the insert trigger and commits)."""
    shared = _copy_shared(template, now)
    ids: list[str] = []
    with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
        for start in range(0, len(payloads), COPY_CHUNK_JOBS):
            chunk = payloads[start : start + COPY_CHUNK_JOBS]
            chunk_ids = uuid7_many(len(chunk))
            rows = [f"{job_id}\t{_copy_args(args)}{shared}" for job_id, args in zip(chunk_ids, chunk, strict=True)]
            copy.write("".join(rows))
            ids.extend(chunk_ids)
        return template.as_jobs(created_at, ids, payloads)


def copy_jobs(conn: psycopg.Connection[Any], jobs: Sequence[NewJob], now: float, created_at: datetime) -> list[Job]:
    """COPY jobs of any options (`enqueue_batch`): the shared columns are encoded once per distinct combination."""
    shared: dict[tuple[Any, ...], str] = {}
    with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
        for start in range(0, len(jobs), COPY_CHUNK_JOBS):
            chunk = jobs[start : start + COPY_CHUNK_JOBS]
            rows = []
            for j in chunk:
                key = (j.type, j.queue, j.scheduled, j.priority, j.max_retries, j.timeout, j.run_at, id(j.tags),
                       id(j.metadata), j.group_key)
                rest = shared.get(key)
                if rest is None:
                    rest = shared[key] = _copy_shared(j, now)
                rows.append(f"{j.id}\t{_copy_args(j.args)}{rest}")
            copy.write("".join(rows))
        return [j.as_job(created_at) for j in jobs]  # while the server parses the last rows (see _copy_many)
