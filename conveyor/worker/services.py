"""A worker's side services, beside its fetcher: progress written every PROGRESS_FLUSH_S, the heartbeat that renews
leases and brings back cancel requests, the cancel watch, maintenance, and writing everything pending at the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from conveyor.backends.base import Outcome, ProgressUpdate, WorkerBeat
from conveyor.errors import BackendError

if TYPE_CHECKING:
    from conveyor.backends import Backend
    from conveyor.blocking import BlockingCalls
    from conveyor.worker.maintenance import Maintenance
    from conveyor.worker.slots import Slots

log = logging.getLogger("conveyor.worker")


class WorkerServices:
    """A mixin of `Worker` (runtime.py), which sets these attributes."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    types: tuple[str, ...]
    concurrency: int
    started_at: float
    lease_s: float
    lost: list[str]
    backend: Backend
    clock: Callable[[], float]
    _calls: BlockingCalls
    _slots: Slots
    _maintenance: Maintenance
    _outcomes: list[Outcome]
    _progress: dict[str, ProgressUpdate]
    _final_progress: list[ProgressUpdate]

    def _cancel_running(self, job_ids: list[str]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ side services
    async def _every(self, seconds: float, action: Callable[[], Awaitable[object]], what: str) -> None:
        """A side service's loop: `action` every `seconds`; a database error is logged, and the next round retries."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except BackendError as exc:
                log.warning("worker %s: %s failed: %s", self.id, what, exc)

    async def _write_progress(self) -> None:
        """Progress goes every PROGRESS_FLUSH_S; outcomes go with the fetcher's next claim."""
        if self._progress:
            progress, self._progress = self._progress, {}
            await self._calls.run(self.backend.write_progress, list(progress.values()), self.clock())

    async def _renew(self) -> None:
        """The heartbeat renews the leases and brings back the jobs whose cancellation was asked."""
        self._cancel_running(await self._beat())

    async def _check_cancels(self) -> None:
        if self._slots.holding():
            self._cancel_running(await self._calls.run(self.backend.cancel_requests, self.id))

    async def _flush(self) -> None:
        """Write every pending outcome and progress update now (run_once, shutdown)."""
        outcomes, self._outcomes = self._outcomes, []
        progress = [*self._final_progress, *self._progress.values()]
        self._final_progress, self._progress = [], {}
        if not outcomes and not progress:
            return
        try:
            lost, _ = await self._calls.run(self.backend.finish_and_claim, outcomes, progress, self.clock(), None)
        except BackendError:
            self._outcomes[:0] = outcomes
            raise
        self._lost(lost)

    def _lost(self, lost: list[str]) -> None:
        if lost:
            self.lost.extend(lost)
            log.warning("worker %s: lease lost, outcome not written for jobs %s", self.id, lost)

    # ------------------------------------------------------------------------------------------ heartbeat
    async def _beat(self) -> list[str]:
        now = self.clock()
        beat = WorkerBeat(
            self.id, self.host, self.pid, self.queues, self.concurrency, self.started_at, now, now + self.lease_s,
            holding=(*self._slots.holding(), *(o.job_id for o in self._outcomes)),
            types=self.types,
        )
        return await self._calls.run(self.backend.heartbeat, beat)

    async def _maintain(self) -> None:
        await self._maintenance.run_once(self.clock())
