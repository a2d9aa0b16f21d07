"""Cron schedules (SPEC section 7): a schedule enqueues a job of a task on a cron expression in a time zone, once
per tick across the whole cluster. `app.schedules` manages them (`manager.Schedules`), `@app.periodic` declares them
in code, and the scheduler (`service.Scheduler`) that every worker and `serve` runs fires them. This package's root
holds the values only (the backend's schedule operations import them; the manager imports those operations)."""

from __future__ import annotations

from conveyor.schedules.cron import Cron, describe
from conveyor.schedules.model import Schedule, ScheduleChange, ScheduleSpec

__all__ = ["Cron", "Schedule", "ScheduleChange", "ScheduleSpec", "describe"]
