"""Live job events for the dashboard's pages, as Server-Sent Events read from the change outbox.

One watcher per dashboard polls the cheapest possible query (the newest change id) and wakes the open streams when it
moves; each stream then reads the changes after its own last id, so none is missed and a reconnecting browser
(`Last-Event-ID`) gets what happened while it was away. A stream coalesces a burst of changes to one job into one
event carrying the job's current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.job import Job

WATCH_INTERVAL_S = 0.2
KEEPALIVE_S = 15.0
RETRY_MS = 2000


@dataclass(frozen=True, slots=True)
class EventFilter:
    job_id: str | None = None
    type: str | None = None
    queue: str | None = None
    tag: str | None = None

    def matches(self, job: Job) -> bool:
        return (
            (self.job_id is None or job.id == self.job_id)
            and (self.type is None or job.type == self.type)
            and (self.queue is None or job.queue == self.queue)
            and (self.tag is None or self.tag in job.tags)
        )


class EventHub:
    """Wakes every open stream when the outbox has something new."""

    def __init__(self, conveyor: Conveyor, interval_s: float = WATCH_INTERVAL_S) -> None:
        self.conveyor = conveyor
        self.interval_s = interval_s
        self.latest = 0
        self._changed: asyncio.Condition | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._streams = 0

    async def _watch(self) -> None:
        assert self._changed is not None
        while self._streams > 0:
            latest = await asyncio.to_thread(self.conveyor.backend.last_change_id)
            if latest != self.latest:
                self.latest = latest
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(self.interval_s)

    async def _wait_for_change(self, seen: int, timeout: float) -> None:
        assert self._changed is not None
        if self.latest > seen:
            return
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def _join(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        self._streams += 1
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def _leave(self) -> None:
        self._streams -= 1

    async def stream(self, filters: EventFilter, last_event_id: int | None) -> AsyncIterator[str]:
        """The SSE text of the stream: `event: job` with the job's JSON, `event: deleted` with `{"id"}`."""
        backend = self.conveyor.backend
        seen = last_event_id if last_event_id is not None else await asyncio.to_thread(backend.last_change_id)
        self._join()
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n"
            while True:
                await self._wait_for_change(seen, KEEPALIVE_S)
                changes = await asyncio.to_thread(backend.changes_since, seen, 500)
                if not changes:
                    yield ": keepalive\n\n"
                    continue
                seen = changes[-1].id
                newest: dict[str, int] = {}
                for change in changes:
                    newest[change.job_id] = change.id
                for job_id, change_id in sorted(newest.items(), key=lambda item: item[1]):
                    job = await asyncio.to_thread(self.conveyor.get_job, job_id)
                    if job is None:
                        if filters.job_id in (None, job_id):
                            yield _event("deleted", change_id, json.dumps({"id": job_id}))
                    elif filters.matches(job):
                        yield _event("job", change_id, json.dumps(job.to_dict()))
        finally:
            self._leave()


def _event(name: str, event_id: int, data: str) -> str:
    return f"event: {name}\nid: {event_id}\ndata: {data}\n\n"
