"""Live events: one poller per server reads the change outbox and fans each change out to every subscriber.

The outbox (`Backend.changes_since`) records every state change and progress write, from any process, under an id
that increases across the whole system. The hub polls `change_token()` every few tens of milliseconds, reads the new
changes once, loads each changed job once, encodes the SSE frame once, and hands it to each matching subscriber's
bounded queue. A subscriber whose queue is full is dropped (its stream ends); the client reconnects with
`Last-Event-ID` and resumes from the outbox, so a slow client loses nothing and never slows the others.

`EventStreamResponse` serves a subscriber's frames with sse-starlette (heartbeats, client disconnects, server
shutdown); what is ours is the resume: frames are encoded once by the hub with the outbox id, and a reconnecting
client's `Last-Event-ID` replays what it missed from the outbox (`EventHub.replay`).

Each change is one `event: job` whose data is the job as the hub reads it: several changes read in one pass (a job
created, claimed and completed within a few milliseconds) each keep their own id but carry the newest state. A
deleted job's change is an `event: deleted` with `{"id": ...}` (for subscribers not filtering by type, queue, tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from conveyor.blocking import BlockingCalls
from conveyor.errors import ConveyorError
from conveyor.job import Job

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.backends.base import JobChange

log = logging.getLogger("conveyor.api.events")

POLL_INTERVAL_S = 0.05  # how often the hub asks the database whether anything changed (a cheap read)
RESYNC_S = 1.0  # read the outbox at least this often, even if the change token did not move
HEARTBEAT_S = 15.0
BUFFER_EVENTS = 4096  # per subscriber; a client further behind than this is dropped and resumes by Last-Event-ID
READ_BATCH = 1000
ERROR_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which jobs a subscriber wants; every given field must match."""

    job_id: str | None = None
    type: str | None = None
    queue: str | None = None
    tag: str | None = None

    def matches_deleted(self, job_id: str) -> bool:
        """A deleted job's type, queue and tags are gone: only unfiltered and job_id subscribers hear of it."""
        return self.type is None and self.queue is None and self.tag is None and self.job_id in (None, job_id)

    def matches(self, job: Job) -> bool:
        return (
            (self.job_id is None or job.id == self.job_id)
            and (self.type is None or job.type == self.type)
            and (self.queue is None or job.queue == self.queue)
            and (self.tag is None or self.tag in job.tags)
        )


@dataclass(eq=False)
class Subscriber:
    filter: EventFilter
    buffer: int = BUFFER_EVENTS
    queue: asyncio.Queue[bytes | None] = field(init=False)
    dropped: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.buffer)

    def offer(self, frame: bytes | None) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped = True
            # Make room for the end-of-stream marker, so the writer ends at once.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


def deleted_frame(event_id: int, job_id: str) -> bytes:
    return f'id: {event_id}\nevent: deleted\ndata: {{"id":{json.dumps(job_id)}}}\n\n'.encode()


def frame(event_id: int, job: Job) -> bytes:
    data = json.dumps(job.to_dict(), separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: job\ndata: {data}\n\n".encode()


class EventHub:
    """The server's single outbox poller and its subscribers."""

    def __init__(
        self,
        conveyor: Conveyor,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        heartbeat_s: float = HEARTBEAT_S,
        buffer_events: int = BUFFER_EVENTS,
    ) -> None:
        self.conveyor = conveyor
        self.poll_interval_s = poll_interval_s
        self.heartbeat_s = heartbeat_s
        self.buffer_events = buffer_events
        self.position = 0  # the id of the newest change handed to subscribers
        self.subscribers: set[Subscriber] = set()
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._calls = BlockingCalls("conveyor-events")
        self._listener: Any = None  # the backend's LISTEN connection, when it has one

    async def start(self) -> None:
        """Start polling (once); the first subscriber does it, so a mounted router needs no lifespan hook."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                self.position = await self._calls.run(self.conveyor.backend.last_change_id)
            except BaseException as exc:
                started, self._started = self._started, None
                if isinstance(exc, Exception):
                    started.set_exception(exc)
                    started.exception()  # concurrent subscribers get it too; none must be there to retrieve it
                else:
                    started.cancel()
                raise
            self._task = asyncio.create_task(self._poll(), name="conveyor event hub")
            self._started.set_result(None)
        await self._started

    async def close(self) -> None:
        """End every stream and stop polling (server shutdown)."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.offer(None)
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await self._calls.run(listener.close)
        self._calls.close(wait=False)

    def close_soon(self) -> None:
        """`close` from a signal handler or another thread of the server's loop."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.offer(None)

    # ------------------------------------------------------------------------------------------ subscribing
    async def subscribe(self, flt: EventFilter) -> tuple[Subscriber, int]:
        """Register a subscriber; it gets every change after the returned position."""
        await self.start()
        sub = Subscriber(flt, self.buffer_events)
        if self.closed:
            sub.offer(None)
        else:
            self.subscribers.add(sub)
        return sub, self.position

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def replay(self, after_id: int, until_id: int, flt: EventFilter) -> list[bytes]:
        """The frames of changes in (after_id, until_id] matching the filter: what a resuming client missed."""
        frames: list[bytes] = []
        while after_id < until_id:
            changes = await self._calls.run(self.conveyor.backend.changes_since, after_id, READ_BATCH)
            changes = [c for c in changes if c.id <= until_id]
            if not changes:
                break
            jobs = await self._calls.run(self._load, [c.job_id for c in changes if flt.job_id in (None, c.job_id)])
            for change in changes:
                job = jobs.get(change.job_id)
                if job is not None and flt.matches(job):
                    frames.append(frame(change.id, job))
                elif job is None and flt.matches_deleted(change.job_id):
                    frames.append(deleted_frame(change.id, change.job_id))
            after_id = changes[-1].id
        return frames

    # ------------------------------------------------------------------------------------------ polling
    def _load(self, job_ids: Sequence[str]) -> dict[str, Job]:
        jobs: dict[str, Job] = {}
        for job_id in dict.fromkeys(job_ids):
            job = self.conveyor.backend.get_job(job_id)
            if job is not None:
                jobs[job_id] = job
        return jobs

    def _change_counter(self) -> Callable[[], int]:
        """What tells the poller that the outbox may have grown: a LISTEN on the backend's change channel where
        it has one (PostgreSQL NOTIFY), else its change token (SQLite: the file's data version, any process)."""
        backend = self.conveyor.backend
        listen = getattr(backend, "listen", None)
        if callable(listen):
            listener = listen()
            self._listener = listener
            return lambda: int(listener.count)
        return backend.change_token

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            counter = await self._calls.run(self._change_counter)
        except Exception as exc:  # noqa: BLE001 - no LISTEN connection: poll the change token instead
            log.warning("event hub: cannot listen for changes (%s); polling", exc)
            counter = self.conveyor.backend.change_token
        # A notification may come before its rows are readable (PostgreSQL reads only behind the oldest running
        # transaction), so without an exact token look again more often.
        resync_s = RESYNC_S if self._listener is None else min(RESYNC_S, 0.25)
        token: int | None = None
        last_read = 0.0
        while True:
            try:
                now = loop.time()
                current = await self._calls.run(counter)
                if current != token or now - last_read >= resync_s:
                    token, last_read = current, now
                    await self._read_new()
            except ConveyorError as exc:
                log.warning("event hub: reading changes failed: %s", exc)
                await asyncio.sleep(ERROR_PAUSE_S)
            except Exception:  # the poller must outlive any one bad read, or every stream goes quiet
                log.exception("event hub: unexpected error while reading changes")
                await asyncio.sleep(ERROR_PAUSE_S)
            await asyncio.sleep(self.poll_interval_s)

    async def _read_new(self) -> None:
        backend = self.conveyor.backend
        while True:
            changes = await self._calls.run(backend.changes_since, self.position, READ_BATCH)
            if not changes:
                return
            if self.subscribers:
                wanted = self._followed_jobs()
                ids = [c.job_id for c in changes if wanted is None or c.job_id in wanted]
                self._fan_out(changes, await self._calls.run(self._load, ids))
            self.position = changes[-1].id
            if len(changes) < READ_BATCH:
                return

    def _followed_jobs(self) -> set[str] | None:
        """The jobs the subscribers follow, when each follows one (clients waiting for a result); None: all."""
        wanted: set[str] = set()
        for sub in self.subscribers:
            if sub.filter.job_id is None:
                return None
            wanted.add(sub.filter.job_id)
        return wanted

    def _fan_out(self, changes: Sequence[JobChange], jobs: dict[str, Job]) -> None:
        """Each change's frame, encoded once, to every subscriber it matches; a subscriber too far behind is dropped."""
        for change in changes:
            job = jobs.get(change.job_id)
            encoded: bytes | None = None
            for sub in list(self.subscribers):
                if job is not None and sub.filter.matches(job):
                    encoded = encoded or frame(change.id, job)
                elif job is None and sub.filter.matches_deleted(change.job_id):
                    encoded = encoded or deleted_frame(change.id, change.job_id)
                else:
                    continue
                sub.offer(encoded)
                if sub.dropped:
                    self.subscribers.discard(sub)


class EventStreamResponse(EventSourceResponse):
    """A `text/event-stream` of the subscriber's frames (sse-starlette), with a heartbeat comment; ends when the
    client leaves, when the subscriber is dropped for being too slow, or when the server shuts down."""

    def __init__(self, hub: EventHub, sub: Subscriber, backlog: list[bytes]) -> None:
        super().__init__(
            _frames(hub, sub, backlog),
            ping=hub.heartbeat_s,
            sep="\n",
            ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
            headers={"Cache-Control": "no-cache"},
        )


async def _frames(hub: EventHub, sub: Subscriber, backlog: list[bytes]) -> AsyncIterator[bytes]:
    """The stream's bytes: a first comment, the backlog, then the live frames, many joined in one write."""
    try:
        yield b": connected\n\n"
        if backlog:
            yield b"".join(backlog)
        queue = sub.queue
        while True:
            item = await queue.get()
            chunks: list[bytes] = []
            while item is not None:
                chunks.append(item)
                if queue.empty() or len(chunks) >= 256:
                    break
                item = queue.get_nowait()
            if chunks:
                yield b"".join(chunks)
            if item is None:
                return
    finally:
        hub.unsubscribe(sub)
