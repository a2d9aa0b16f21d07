"""Live events over real HTTP: delivery, filters, Last-Event-ID resume, heartbeats, cleanup, workers in other
processes, and the hub's bounded per-subscriber buffers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Conveyor
from conveyor.api.events import EventFilter, EventHub
from tests.api.conftest import RunningServer
from tests.conftest import wait_for


class SSEReader:
    """Reads an SSE stream in a thread over a plain socket (closing it really disconnects, at once);
    `events` are (id, event, data) and `comments` the comment lines."""

    def __init__(self, url: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.ended = threading.Event()
        parsed = httpx.URL(url, params=params)
        self._sock = socket.create_connection((parsed.host, parsed.port or 80), timeout=60)
        target = parsed.raw_path.decode()
        lines = [f"GET {target} HTTP/1.1", f"Host: {parsed.host}:{parsed.port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_for(lambda: self.status is not None or self.ended.is_set(), timeout=30, what="the SSE response")

    def _run(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            self.status = int(stream.readline().split()[1])
            chunked = False
            while (line := stream.readline().strip()) != b"":
                chunked = chunked or line.lower() == b"transfer-encoding: chunked"
            text = b""
            fields: dict[str, str] = {}
            while True:
                if chunked:
                    size = int(stream.readline().strip(), 16)
                    if size == 0:
                        return
                    text += stream.read(size)
                    stream.readline()
                else:
                    data = stream.read1(65536)
                    if not data:
                        return
                    text += data
                while b"\n" in text:
                    raw, text = text.split(b"\n", 1)
                    line_s = raw.decode()
                    if line_s.startswith(":"):
                        self.comments.append(line_s[1:].strip())
                    elif line_s == "":
                        if "data" in fields:
                            self.events.append((int(fields["id"]), fields.get("event", ""), json.loads(fields["data"])))
                        fields = {}
                    else:
                        key, _, value = line_s.partition(":")
                        fields[key] = value.removeprefix(" ")
        except (OSError, ValueError, IndexError):
            pass
        finally:
            self.ended.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=10)

    def statuses(self, job_id: str) -> list[str]:
        return [data["status"] for _, kind, data in self.events if kind == "job" and data["id"] == job_id]


@pytest.fixture
def sse(server: RunningServer) -> Iterator[Callable[..., SSEReader]]:
    readers: list[SSEReader] = []

    def open_stream(params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> SSEReader:
        reader = SSEReader(f"{server.url}/api/v1/events", params, headers)
        readers.append(reader)
        return reader

    yield open_stream
    for reader in readers:
        reader.close()


def test_events_carry_job_and_increasing_ids(server: RunningServer, sse: Callable[..., SSEReader]) -> None:
    stream = sse()
    assert stream.status == 200
    app = server.conveyor
    job = app.enqueue("demo.echo", {"n": 1})
    app.run_worker(concurrency=1, burst=True)
    wait_for(lambda: "completed" in stream.statuses(job.id), timeout=30, what="the completed event")
    # One event per change (created, claimed, completed); each carries the job as the server read it then.
    assert len(stream.statuses(job.id)) >= 3 and stream.statuses(job.id)[-1] == "completed"
    assert {e for _, e, _ in stream.events} == {"job"}
    ids = [i for i, _, _ in stream.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    last = stream.events[-1][2]
    assert last["result"] == {"n": 1} and last["progress"] == 100


def test_filters(server: RunningServer, sse: Callable[..., SSEReader]) -> None:
    app = server.conveyor
    target = app.enqueue("demo.echo", {}, queue="q1", tags=["t:1"])
    by_id = sse({"job_id": target.id})
    by_type = sse({"type": "demo.sleep"})
    by_queue = sse({"queue": "q2"})
    by_tag = sse({"tag": "t:2"})
    everything = sse()
    app.cancel(target.id)
    sleeper = app.enqueue("demo.sleep", {"seconds": 0}, queue="q2", tags=["t:2"])
    echo2 = app.enqueue("demo.echo", {}, queue="q2")
    app.enqueue("demo.echo", {}, tags=["t:2"])
    wait_for(lambda: len(everything.events) >= 4, timeout=30, what="all events")
    wait_for(lambda: by_tag.events and by_queue.events and by_type.events and by_id.events, timeout=30)
    assert {d["id"] for _, _, d in by_id.events} == {target.id}
    assert {d["id"] for _, _, d in by_type.events} == {sleeper.id}
    wait_for(lambda: len(by_queue.events) >= 2, timeout=30)
    assert {d["id"] for _, _, d in by_queue.events} == {sleeper.id, echo2.id}
    wait_for(lambda: len(by_tag.events) >= 2, timeout=30)
    assert all("t:2" in d["tags"] for _, _, d in by_tag.events) and len(by_tag.events) == 2


def test_resume_with_last_event_id(server: RunningServer, sse: Callable[..., SSEReader]) -> None:
    app = server.conveyor
    first = sse()
    a = app.enqueue("demo.echo", {"a": 1})
    wait_for(lambda: first.events, timeout=30)
    seen = first.events[-1][0]
    first.close()
    # Changes while the client is away.
    b = app.enqueue("demo.echo", {"b": 1})
    app.cancel(a.id)
    c = app.enqueue("demo.echo", {"c": 1}, tags=["x"])
    resumed = sse(headers={"Last-Event-ID": str(seen)})
    wait_for(lambda: len(resumed.events) >= 3, timeout=30, what="the missed events")
    got = [(d["id"]) for _, _, d in resumed.events[:3]]
    assert got == [b.id, a.id, c.id]
    assert all(i > seen for i, _, _ in resumed.events)
    # And live ones after the replay, without duplicates.
    d = app.enqueue("demo.echo", {"d": 1})
    wait_for(lambda: any(x["id"] == d.id for _, _, x in resumed.events), timeout=30)
    ids = [i for i, _, _ in resumed.events]
    assert ids == sorted(set(ids))
    # The query parameter works too, and a filter applies to the replay.
    tagged = sse({"last_event_id": str(seen), "tag": "x"})
    wait_for(lambda: tagged.events, timeout=30)
    assert [x["id"] for _, _, x in tagged.events] == [c.id]


def test_deleted_job_event(server: RunningServer, sse: Callable[..., SSEReader]) -> None:
    app = server.conveyor
    job = app.enqueue("demo.echo", {})
    everything, by_id, by_type = sse(), sse({"job_id": job.id}), sse({"type": "demo.echo"})
    app.delete(job.id)
    for reader in (everything, by_id):
        wait_for(lambda reader=reader: reader.events, timeout=30, what="the deleted event")
        assert reader.events[-1][1:] == ("deleted", {"id": job.id})
    marker = app.enqueue("demo.echo", {})
    wait_for(lambda: by_type.events, timeout=30)
    assert [(k, d["id"]) for _, k, d in by_type.events] == [("job", marker.id)]


def test_bad_last_event_id_is_422(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.get("/api/v1/events", headers={"Last-Event-ID": "yesterday"})
        assert r.status_code == 422 and r.json()["error"]["code"]
        r = client.get("/api/v1/events", params={"last_event_id": "-3"})
        assert r.status_code == 422


def test_heartbeat_comment(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(heartbeat_s=0.2)
    reader = SSEReader(f"{server.url}/api/v1/events")
    try:
        wait_for(lambda: "ping" in reader.comments, timeout=30, what="a heartbeat")
    finally:
        reader.close()


def test_disconnected_clients_are_cleaned_up(server: RunningServer, sse: Callable[..., SSEReader]) -> None:
    readers = [sse() for _ in range(5)]
    wait_for(lambda: len(server.hub.subscribers) == 5, timeout=30, what="5 subscribers")
    for reader in readers[:3]:
        reader.close()
    wait_for(lambda: len(server.hub.subscribers) == 2, timeout=30, what="cleanup of 3 subscribers")
    for reader in readers[3:]:
        reader.close()
    wait_for(lambda: not server.hub.subscribers, timeout=30, what="cleanup of all subscribers")


def test_events_from_a_worker_in_another_process(
    server: RunningServer, sse: Callable[..., SSEReader], tmp_path: Path
) -> None:
    stream = sse()
    app = server.conveyor
    jobs = [app.enqueue("demo.sleep", {"seconds": 1.5, "steps": 3}) for _ in range(3)]
    env = {**os.environ, "CONVEYOR_LEASE_S": "5"}
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--db", app.database_url, "--processes", "0", "--burst",
         "--concurrency", "3"],
        env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for job in jobs:
        wait_for(lambda job=job: "completed" in stream.statuses(job.id), timeout=30, what="completed from worker")
        statuses = stream.statuses(job.id)
        assert "processing" in statuses
    progress = [d["progress"] for _, _, d in stream.events if d["status"] == "processing"]
    assert any(0 < p < 100 for p in progress), progress  # progress writes are events too


def test_slow_subscriber_is_dropped_without_slowing_others(sqlite_app: Conveyor) -> None:
    async def scenario() -> None:
        hub = EventHub(sqlite_app, buffer_events=5, poll_interval_s=3600)  # the test drives the reads
        await hub.start()
        await asyncio.sleep(0.3)  # let the poller's first read pass
        slow, _ = await hub.subscribe(EventFilter())
        fast, _ = await hub.subscribe(EventFilter())
        received: list[bytes] = []
        for i in range(20):
            sqlite_app.enqueue("demo.echo", {"i": i})
            await hub._read_new()
            while not fast.queue.empty():
                item = fast.queue.get_nowait()
                assert item is not None
                received.append(item)
        assert len(received) == 20  # the fast one got every event
        assert slow.dropped and slow not in hub.subscribers
        items = []
        while not slow.queue.empty():
            items.append(slow.queue.get_nowait())
        assert items[-1] is None  # its stream ends; the client resumes with Last-Event-ID
        await hub.close()

    asyncio.run(scenario())
