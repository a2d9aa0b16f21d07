"""The scheduler: a small service that every worker and `serve` runs. At start it stores the schedules declared in
code; then it fires the due ones and sleeps until the next tick, at most SLEEP_CAP_S, so that a schedule created or
changed elsewhere is seen within a second.

It takes no leadership: every process evaluates every due schedule, and the database lets one of them fire each tick
(`conveyor.backends.schedules`). A leader would only save a few queries, and a dead one would miss ticks until its
role expired.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.blocking import BlockingCalls
from conveyor.errors import BackendError

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.schedules")

SLEEP_CAP_S = 1.0  # the longest the scheduler sleeps: edits made elsewhere are noticed this fast
ERROR_PAUSE_S = 1.0


class Scheduler:
    def __init__(self, app: Conveyor, clock: Callable[[], float] | None = None) -> None:
        self.app = app
        self.clock = clock or app.clock
        self.synced = False

    def run_once(self) -> float:
        """Sync the declared schedules (first call), fire the due ones; returns the seconds to sleep before the next
        call. A database error is logged, and the next call retries."""
        try:
            if not self.synced:
                self.app.schedules.sync()
                self.synced = True
            self.app.schedules.fire_due(self.clock())
            due = self.app.schedules.next_due()
        except BackendError as exc:
            log.warning("scheduler: %s; retrying in %gs", exc, ERROR_PAUSE_S)
            return ERROR_PAUSE_S
        if due is None:
            return SLEEP_CAP_S
        return min(SLEEP_CAP_S, max(0.0, due - self.clock()))

    async def run(self) -> None:
        """The loop inside a worker; runs until cancelled. Its database calls run in a thread of its own, so a pass
        over many due schedules never holds up the worker's claims."""
        calls = BlockingCalls("conveyor-scheduler")
        try:
            while True:
                await asyncio.sleep(await calls.run(self.run_once))
        finally:  # a pass under way ends before the worker closes the backend
            await asyncio.to_thread(calls.close)


class SchedulerThread:
    """The scheduler in a thread of its own: `serve --no-worker` runs one."""

    def __init__(self, app: Conveyor) -> None:
        self.scheduler = Scheduler(app)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="conveyor-scheduler", daemon=True)

    def _run(self) -> None:
        pause = 0.0
        while not self._stop.wait(pause):
            try:
                pause = self.scheduler.run_once()
            except Exception:  # a bug, not the database: said loudly, and the API keeps serving
                log.exception("scheduler: a pass failed; retrying in %gs", ERROR_PAUSE_S)
                pause = ERROR_PAUSE_S

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.thread.join(timeout)
