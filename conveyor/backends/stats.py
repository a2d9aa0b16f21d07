"""The figures of `stats`, assembled the same way from every backend's rows."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.job import JobStatus, iso, to_datetime


@dataclass(frozen=True, slots=True)
class Stats:
    counts: dict[str, int]
    counts_by_type: dict[str, dict[str, int]]
    durations: dict[str, dict[str, float]]
    throughput: list[dict[str, Any]]
    workers: int
    extra: dict[str, Any] = field(default_factory=dict)
    # Types with jobs waiting that no live worker runs ("no worker for `order`: 120 pending"), largest first.
    unserved: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_rows(
        cls,
        by_type_rows: Sequence[tuple[str, str, int]],
        duration_rows: Sequence[tuple[str, float, int]],
        minute_rows: Sequence[tuple[int, str, int]],
        workers: int,
        since: float,
        window_s: float,
        served: set[str] | None = None,
    ) -> Stats:
        """Assemble the figures from what every backend's stats queries return: (type, status, count) rows,
        (type, duration, minute) rows of the window's completed jobs, and (minute, status, count) rows. `served`:
        the types live workers run (None: some worker runs any type)."""
        by_type: dict[str, dict[str, int]] = {}
        for type_, status, n in by_type_rows:
            by_type.setdefault(type_, {})[status] = n
        samples: dict[str, list[float]] = {}
        by_minute: dict[int, list[float]] = {}
        for type_, duration, minute in duration_rows:
            samples.setdefault(type_, []).append(duration)
            by_minute.setdefault(minute, []).append(duration)
        return cls(
            counts={s.value: sum(c.get(s.value, 0) for c in by_type.values()) for s in JobStatus},
            counts_by_type=by_type,
            durations={t: _summary(v) for t, v in samples.items()},
            throughput=_per_minute(minute_rows, since, window_s),
            workers=int(workers),
            extra={"duration_series": _duration_series(by_minute, since, window_s)},
            unserved=[] if served is None else _unserved(by_type, served),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "counts_by_type": self.counts_by_type,
            "durations": self.durations,
            "throughput": self.throughput,
            "workers": self.workers,
            "unserved": self.unserved,
            **self.extra,
        }


# ------------------------------------------------------------------------------------------------ stats helpers
def _duration_series(by_minute: dict[int, list[float]], since: float, window_s: float) -> list[dict[str, Any]]:
    """Per minute of the window: how many jobs completed and their duration summary (seconds; null if none)."""
    series: list[dict[str, Any]] = []
    for i in range(int(window_s // 60)):
        values = by_minute.get(i)
        summary = _summary(values) if values else {"count": 0, "avg": None, "p50": None, "p95": None}
        series.append({"minute": iso(to_datetime(since + 60 * i)), **summary})
    return series


def _unserved(by_type: dict[str, dict[str, int]], served: set[str]) -> list[dict[str, Any]]:
    waiting = ("pending", "scheduled")
    rows = [
        {"type": t, **{s: counts.get(s, 0) for s in waiting}}
        for t, counts in by_type.items()
        if t not in served and any(counts.get(s, 0) for s in waiting)
    ]
    return sorted(rows, key=lambda r: (-r["pending"] - r["scheduled"], r["type"]))


def _summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if len(values) == 1:
        return {"count": 1, "avg": values[0], "p50": values[0], "p95": values[0]}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "avg": statistics.fmean(values), "p50": q[49], "p95": q[94]}


def _per_minute(rows: Sequence[tuple[int, str, int]], since: float, window_s: float) -> list[dict[str, Any]]:
    buckets: list[dict[str, Any]] = [
        {"minute": datetime.fromtimestamp(since + 60 * i, UTC).isoformat(), "completed": 0, "failed": 0}
        for i in range(int(window_s // 60))
    ]
    for minute, status, n in rows:
        if 0 <= minute < len(buckets):
            buckets[minute][status] = n
    return buckets
