"""`app.schedules`: create, read, change, trigger and delete schedules, declare them in code (`@app.periodic`), and
fire the due ones (`fire_due`, one pass of the scheduler that every worker and `serve` runs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from conveyor.backends.params import NewJob
from conveyor.backends.schedules import Firing, ScheduleOps
from conveyor.errors import (
    ConfigError,
    InvalidArgumentsError,
    InvalidStateError,
    ScheduleNotFoundError,
    UnknownTaskError,
)
from conveyor.ids import uuid7
from conveyor.job import Job, iso, to_datetime
from conveyor.options import JobOptions
from conveyor.schedules.cron import Cron
from conveyor.schedules.model import Schedule, ScheduleChange, ScheduleSpec
from conveyor.task import Task

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.schedules")

DUE_BATCH = 1000  # due schedules read per query: a pass reads again while a batch comes back full
FIRE_BATCH = 100  # schedules fired per transaction: few commits, and short transactions
RESCHEDULING = ("cron", "timezone", "paused")  # a change of these computes the next tick anew


class Schedules:
    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.declared: dict[str, ScheduleSpec] = {}

    @property
    def backend(self) -> ScheduleOps:
        backend = self.app.backend
        if not isinstance(backend, ScheduleOps):  # both built-in backends are the shared SQL backend
            raise ConfigError(f"the {backend.dialect} backend does not store schedules")
        return backend

    # ------------------------------------------------------------------------------------------ reading
    def all(self) -> list[Schedule]:
        return self.backend.list_schedules()

    def get(self, name: str) -> Schedule:
        found = self.backend.get_schedule(name)
        if found is None:
            raise ScheduleNotFoundError(name)
        return found

    # ------------------------------------------------------------------------------------------ changing
    def create(self, **fields: Any) -> Schedule:
        """Store a new schedule (the fields of `ScheduleSpec`); `InvalidStateError` if the name is taken, and
        `InvalidArgumentsError` or `UnknownTaskError` (naming the field) for a bad one: nothing is stored then."""
        schedule = self._build(ScheduleSpec.parse(fields), self.app.clock())
        if not self.backend.create_schedule(schedule, schedule.created_at):
            raise InvalidStateError(f"name: a schedule named {schedule.name!r} exists")
        return self.get(schedule.name)

    def update(self, name: str, **fields: Any) -> Schedule:
        """Change any fields of a schedule (`ScheduleChange`); a new cron, time zone or `paused` moves its next tick
        to the first one from now."""
        change = ScheduleChange.parse(fields)
        stored = self.get(name)
        given = {k: getattr(change, k) for k in change.model_fields_set}
        merged = ScheduleSpec.parse({**self._spec_fields(stored), **given})
        now = self.app.clock()
        schedule = self._build(merged, now, created_at=stored.created_at)
        reschedule = any(getattr(schedule, k) != getattr(stored, k) for k in RESCHEDULING)
        if not self.backend.update_schedule(schedule, now, reschedule=reschedule):
            raise ScheduleNotFoundError(name)
        return self.get(name)

    def pause(self, name: str) -> Schedule:
        return self.update(name, paused=True)

    def resume(self, name: str) -> Schedule:
        return self.update(name, paused=False)

    def delete(self, name: str) -> None:
        if not self.backend.delete_schedule(name):
            raise ScheduleNotFoundError(name)

    def trigger(self, name: str) -> Job:
        """Enqueue one job of the schedule now (its ticks are not changed)."""
        schedule = self.get(name)
        now = self.app.clock()
        job = self.app.backend.insert_jobs([self._job(schedule, now, now, keyed=False)], now)[0]
        self.backend.record_schedule_run(name, now, job.id)
        return job

    # ------------------------------------------------------------------------------------------ in code
    def periodic(self, cron: str, *, name: str | None = None, **fields: Any) -> Callable[[Any], Task]:
        """`@app.periodic("*/5 * * * *", name=..., args={...}, timezone=..., queue=..., priority=...)` on a task
        (above `@app.task`) or on a plain function (registered as a task with the defaults). Checked at once;
        stored when a worker or `serve` starts (`sync`)."""

        def declare(target: Any) -> Task:
            Cron(cron, fields.get("timezone") or "UTC")  # a bad expression registers no task
            task = target if isinstance(target, Task) else self.app.task(target)
            spec = ScheduleSpec.parse({"name": name or task.name, "task": task.name, "cron": cron, **fields})
            self._build(spec, 0.0)  # the task and its args, checked now rather than at start
            if spec.name in self.declared and self.declared[spec.name] != spec:
                raise ConfigError(f"two @periodic declarations are named {spec.name!r}: give each its own name=")
            self.declared[spec.name] = spec
            return task

        return declare

    def sync(self) -> int:
        """Create or update the schedules declared in code, by name (never a second one); returns how many
        changed."""
        if not self.declared:
            return 0
        now = self.app.clock()
        built = [self._build(spec, now) for spec in self.declared.values()]
        return self.backend.sync_schedules(built, now)

    # ------------------------------------------------------------------------------------------ firing
    def fire_due(self, now: float | None = None) -> list[Job]:
        """Fire every due schedule whose task this app runs: each tick's job once across the cluster. Returns the
        jobs this call inserted."""
        now = self.app.clock() if now is None else now
        fired: list[Job] = []
        while True:
            due = self.backend.due_schedules(now, DUE_BATCH)
            firings = [f for s in due if s.task in self.app.tasks and (f := self._firing(s, now)) is not None]
            for i in range(0, len(firings), FIRE_BATCH):
                fired.extend(j for j in self.backend.fire_schedules(firings[i : i + FIRE_BATCH], now) if not j.existing)
            if len(due) < DUE_BATCH or not firings:
                return fired

    def next_due(self) -> float | None:
        return self.backend.next_schedule_at()

    def _firing(self, schedule: Schedule, now: float) -> Firing | None:
        """The schedule's ticks due at `now` (none if it cannot fire: a stored schedule whose task changed, say)."""
        assert schedule.next_run_at is not None
        try:
            when = schedule.when
            ticks = when.due(schedule.next_run_at, now, schedule.catch_up)
            following = when.next_after(max(now, ticks[-1]) if ticks else now)
            jobs = [self._job(schedule, tick, now) for tick in ticks]
        except (InvalidArgumentsError, UnknownTaskError) as exc:
            log.error("schedule %s cannot fire: %s", schedule.name, exc)
            return None
        if not ticks:
            log.info("schedule %s: ticks missed since %s skipped (catch_up is off)", schedule.name,
                     iso(to_datetime(schedule.next_run_at)))
        return Firing(schedule.name, schedule.next_run_at, following, jobs, ticks[-1] if ticks else now)

    # ------------------------------------------------------------------------------------------ helpers
    def _job(self, schedule: Schedule, tick: float, now: float, *, keyed: bool = True) -> NewJob:
        task = self.app.get_task(schedule.task)
        scheduled_for = iso(to_datetime(tick))
        options = JobOptions.of(**schedule.job_options(), metadata={"schedule": schedule.name,
                                                                    "scheduled_for": scheduled_for})
        job = task.keyed(options.resolve(task, self.app.settings, now).with_payload(uuid7(), schedule.args))
        # the key the database keeps unique among open jobs: one job per (schedule, tick)
        return replace(job, unique_key=f"schedule:{schedule.name}:{scheduled_for}") if keyed else job

    def _build(self, spec: ScheduleSpec, now: float, created_at: float | None = None) -> Schedule:
        try:
            task = self.app.get_task(spec.task)
        except UnknownTaskError as exc:
            raise UnknownTaskError(exc.task_type, exc.known, where="task") from None
        try:
            args = task.validate(spec.args or {})
        except InvalidArgumentsError as exc:
            raise InvalidArgumentsError(f"args: {exc.message}", errors=exc.errors) from None
        paused = bool(spec.paused)
        return Schedule(
            name=spec.name, task=spec.task, cron=spec.cron, timezone=spec.timezone, args=args, queue=spec.queue,
            priority=spec.priority, max_retries=spec.max_retries, timeout=spec.timeout, tags=list(spec.tags or []),
            paused=paused, catch_up=bool(spec.catch_up), next_run_at=Cron(spec.cron, spec.timezone).next_after(now),
            last_run_at=None, last_job_id=None, created_at=now if created_at is None else created_at, updated_at=now,
        )

    @staticmethod
    def _spec_fields(s: Schedule) -> dict[str, Any]:
        return {"name": s.name, "task": s.task, "cron": s.cron, "timezone": s.timezone, "args": s.args,
                "queue": s.queue, "priority": s.priority, "max_retries": s.max_retries, "timeout": s.timeout,
                "tags": s.tags, "paused": s.paused, "catch_up": s.catch_up}
