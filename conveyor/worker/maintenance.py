"""Maintenance, run by every worker (twice is harmless): jobs of lost workers go back to their queue once their lease
ended, finished jobs past the retention are pruned, and so is the change outbox past CHANGES_KEEP_S."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.backends.base import Backend
    from conveyor.blocking import BlockingCalls

log = logging.getLogger("conveyor.worker")

PRUNE_EVERY_S = 600.0
CHANGES_KEEP_S = 2 * 3600.0  # the outbox keeps two hours, so SSE clients can resume after at least one


class Maintenance:
    def __init__(self, backend: Backend, calls: BlockingCalls, worker_id: str, retention_s: float) -> None:
        self.backend = backend
        self.calls = calls
        self.worker_id = worker_id
        self.retention_s = retention_s
        self._last_prune = 0.0

    async def run_once(self, now: float) -> None:
        rescued = await self.calls.run(self.backend.rescue_expired, now)
        if rescued:
            log.warning("worker %s: %d jobs of lost workers returned to the queue", self.worker_id, rescued)
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            await self.calls.run(self.backend.prune, now - self.retention_s, now)
            await self.calls.run(self.backend.prune_changes, now - CHANGES_KEEP_S)
