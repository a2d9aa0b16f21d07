"""The backend's schedule operations (SPEC section 7), a mixin of the shared SQL backend; their SQL is each dialect's
`schedules.sql`.

Exactly one job per tick, cluster-wide: `fire_schedules` moves the schedule's `next_run_at` on, guarded by the tick
the caller read (`claim_tick`), and inserts the tick's jobs in the same transaction, each with a unique key of
(schedule, tick). A process that lost the race finds the guard false and inserts nothing; a process killed mid-tick
committed nothing, so the tick is still due; and the unique key makes a second insert of an open tick's job return
the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from conveyor.backends.driver import Driver, Tx, dumps
from conveyor.backends.params import NewJob
from conveyor.job import Job
from conveyor.schedules.model import Schedule

if TYPE_CHECKING:
    from collections.abc import Callable

@dataclass(frozen=True, slots=True)
class Firing:
    """One schedule's due ticks: the tick it was due at (`due`, as read), its next tick after them, the ticks' jobs,
    and the last tick (its `last_run_at`)."""

    name: str
    due: float
    next_run_at: float
    jobs: Sequence[NewJob]
    last_tick: float


SYNCED_FIELDS = ("task", "cron", "timezone", "args", "queue", "priority", "max_retries", "timeout", "tags", "catch_up")


class ScheduleOps:
    driver: Driver
    _decode: Callable[[Any], Any]
    _insert_unique: Callable[[Tx, Sequence[NewJob], float], list[Job]]  # the shared backend's insert of keyed jobs

    def _schedule(self, row: dict[str, Any]) -> Schedule:
        return Schedule(
            name=row["name"], task=row["task"], cron=row["cron"], timezone=row["timezone"],
            args=self._decode(row["args"]), queue=row["queue"], priority=row["priority"],
            max_retries=row["max_retries"], timeout=row["timeout"], tags=self._decode(row["tags"]),
            paused=bool(row["paused"]), catch_up=bool(row["catch_up"]), next_run_at=row["next_run_at"],
            last_run_at=row["last_run_at"], last_job_id=None if row["last_job_id"] is None else str(row["last_job_id"]),
            created_at=row["created_at"], updated_at=row["updated_at"],
        )

    @staticmethod
    def _schedule_row(s: Schedule, now: float) -> dict[str, Any]:
        return {
            "name": s.name, "task": s.task, "cron": s.cron, "timezone": s.timezone, "args": dumps(s.args),
            "queue": s.queue, "priority": s.priority, "max_retries": s.max_retries, "timeout": s.timeout,
            "tags": dumps(s.tags), "paused": s.paused, "catch_up": s.catch_up, "next_run_at": s.next_run_at,
            "now": now,
        }

    def list_schedules(self) -> list[Schedule]:
        return [self._schedule(r) for r in self.driver.read(lambda tx: tx.dicts("list_schedules"))]

    def get_schedule(self, name: str) -> Schedule | None:
        rows = self.driver.read(lambda tx: tx.dicts("get_schedule", {"name": name}))
        return self._schedule(rows[0]) if rows else None

    def create_schedule(self, schedule: Schedule, now: float) -> bool:
        """Store a new schedule; False (nothing stored) if one of that name exists."""
        row = self._schedule_row(schedule, now)
        return self.driver.write(lambda tx: tx.execute("insert_schedule", row)) == 1

    def update_schedule(self, schedule: Schedule, now: float, *, reschedule: bool) -> bool:
        """Write a schedule's fields; its `next_run_at` only with `reschedule` (so a tick claimed since the caller
        read it stays claimed). False if no schedule has that name."""
        row = {**self._schedule_row(schedule, now), "reschedule": reschedule}
        return self.driver.write(lambda tx: tx.execute("update_schedule", row)) == 1

    def delete_schedule(self, name: str) -> bool:
        return self.driver.write(lambda tx: tx.execute("delete_schedule", {"name": name})) == 1

    def sync_schedules(self, schedules: Sequence[Schedule], now: float) -> int:
        """Create or update schedules declared in code, by name, in one transaction; returns how many changed. A
        schedule whose declared fields are as stored is left alone (so is its `paused`, which people steer)."""

        def go(tx: Tx) -> int:
            changed = 0
            for wanted in schedules:
                if tx.execute("insert_schedule", self._schedule_row(wanted, now)) == 1:
                    changed += 1
                    continue
                stored = self._schedule(tx.dicts("get_schedule", {"name": wanted.name})[0])
                if all(getattr(stored, f) == getattr(wanted, f) for f in SYNCED_FIELDS):
                    continue
                moved = (stored.cron, stored.timezone) != (wanted.cron, wanted.timezone)
                merged = replace(wanted, paused=stored.paused)
                tx.execute("update_schedule", {**self._schedule_row(merged, now), "reschedule": moved})
                changed += 1
            return changed

        return self.driver.write(go)

    def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        rows = self.driver.read(lambda tx: tx.dicts("due_schedules", {"now": now, "limit": limit}))
        return [self._schedule(r) for r in rows]

    def next_schedule_at(self) -> float | None:
        value = self.driver.read(lambda tx: tx.rows("next_schedule_at"))[0][0]
        return None if value is None else float(value)

    def fire_schedules(self, firings: Sequence[Firing], now: float) -> list[Job]:
        """Claim each firing's tick (move its schedule's `next_run_at` on) and insert its jobs (each with its unique
        key), all in one transaction; a firing whose tick another process claimed first inserts nothing. Returns the
        jobs of the claimed ticks (one that an open job already held is that job, `existing`)."""

        def go(tx: Tx) -> list[Job]:
            out: list[Job] = []
            for f in firings:
                if tx.execute("claim_tick", {"name": f.name, "due": f.due, "next_run_at": f.next_run_at}) == 0:
                    continue
                jobs = self._insert_unique(tx, f.jobs, now)
                if jobs:
                    tx.execute("record_schedule_run", {"name": f.name, "at": f.last_tick, "job_id": jobs[-1].id})
                out.extend(jobs)
            return out

        return self.driver.write(go)

    def record_schedule_run(self, name: str, at: float, job_id: str) -> None:
        self.driver.write(lambda tx: tx.execute("record_schedule_run", {"name": name, "at": at, "job_id": job_id}))

