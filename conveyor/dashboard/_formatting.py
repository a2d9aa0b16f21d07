"""How the dashboard's templates show values: relative times, durations, JSON, short ids, URL segments."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2

from conveyor.job import JobStatus

if TYPE_CHECKING:
    from conveyor.job import Job

STATUSES = [s.value for s in JobStatus]


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h"), (math.inf, 86400, "d")):
        if seconds < limit:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return ""  # pragma: no cover - the last limit is infinite


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def job_duration(job: Job) -> float | None:
    if job.started_at is None:
        return None
    end = job.completed_at or datetime.now(UTC)
    return (end - job.started_at).total_seconds()


def short(job_id: str) -> str:
    """The random tail of an id: UUIDv7 ids of one period share their (time) prefix."""
    return "…" + job_id[-8:] if len(job_id) > 12 else job_id


def segment(value: str) -> str:
    """A value as one URL path segment (a queue named `a/b` stays one segment)."""
    return quote(str(value), safe="")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conveyor.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(relative=relative, pretty_json=pretty_json, duration=duration, short=short, segment=segment)
    env.globals.update(statuses=STATUSES, iso=lambda d: d.isoformat() if d else "", job_duration=job_duration)
    return env
