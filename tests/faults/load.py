"""A small HTTP load generator for the fault tests: a steady rate of mixed REST calls (enqueues, gets, lists,
cancels, stats) plus one Server-Sent Events stream, recording every answer a user would have seen."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse

MAX_IN_FLIGHT = 64


@dataclass
class LoadReport:
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx answers and failed requests, as a user saw them
    enqueued: list[str] = field(default_factory=list)  # ids the API answered 201 for
    cancelled: list[str] = field(default_factory=list)  # ids whose cancel the API answered 200 for
    events: int = 0  # job events the stream delivered
    stream_errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds, by kind of request
    seconds: float = 0.0

    def summary(self) -> str:
        def quantiles(values: list[float]) -> str:
            values = sorted(values)
            return f"p50 {values[len(values) // 2] * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms"

        total = sum(self.sent.values())
        latency = "; ".join(f"{k} {quantiles(v)}" for k, v in sorted(self.latencies.items()) if v)
        return (f"{total} requests in {self.seconds:.0f}s ({total / max(self.seconds, 1e-9):.0f}/s): "
                f"{dict(self.sent)}, statuses {dict(self.statuses)}, {self.events} events, "
                f"{len(self.server_errors)} server errors; {latency}")


class ApiLoad:
    """`rate` requests per second against `base_url` until `done()` is true (checked once a second)."""

    def __init__(self, base_url: str, args: Callable[[int], dict[str, Any]], rate: float = 200.0) -> None:
        self.base_url = base_url
        self.args = args  # the `record` arguments of the n-th job enqueued through the API
        self.rate = rate
        self.report = LoadReport()
        self.known: list[str] = []  # ids to read and cancel
        self._n = 0

    async def run(self, done: Callable[[], bool], deadline_s: float) -> LoadReport:
        # keep-alive shorter than the server's (uvicorn closes an idle connection after 5 s, httpx's default is the
        # same 5 s): else a request sent on a connection the server is closing fails, a race of the client's making
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT + 2, max_keepalive_connections=MAX_IN_FLIGHT,
                              keepalive_expiry=2.0)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60, limits=limits) as client:
            stream = asyncio.create_task(self._stream(client))
            gate = asyncio.Semaphore(MAX_IN_FLIGHT)
            tasks: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            next_check = started + 1.0
            sent = 0
            while True:
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 1.0
                    if await asyncio.to_thread(done) or now - started > deadline_s:
                        break
                due = int((now - started) * self.rate)
                while sent < due:
                    sent += 1
                    await gate.acquire()
                    task = asyncio.create_task(self._one(client, gate))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)
            self.report.seconds = time.monotonic() - started
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)
        return self.report

    async def _one(self, client: httpx.AsyncClient, gate: asyncio.Semaphore) -> None:
        kind = random.choices(["get", "list", "enqueue", "batch", "cancel", "stats"], [40, 20, 20, 3, 10, 7])[0]
        if not self.known and kind in ("get", "cancel"):
            kind = "enqueue"
        self.report.sent[kind] += 1
        began = time.monotonic()
        try:
            response = await self._send(client, kind)
            self.report.latencies.setdefault(kind, []).append(time.monotonic() - began)
        except httpx.HTTPError as exc:
            self.report.server_errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return
        finally:
            gate.release()
        self.report.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.report.server_errors.append(f"{kind} -> {response.status_code}: {response.text[:300]}")
        elif kind in ("enqueue", "batch") and response.status_code == 201:
            body = response.json()
            ids = [j["id"] for j in body["jobs"]] if kind == "batch" else [body["id"]]
            self.report.enqueued += ids
            self.known += ids
        elif kind == "cancel" and response.status_code == 200:
            self.report.cancelled.append(response.json()["id"])

    async def _send(self, client: httpx.AsyncClient, kind: str) -> httpx.Response:
        if kind == "get":
            return await client.get(f"/api/v1/jobs/{random.choice(self.known)}")
        if kind == "list":
            params = random.choice([{"limit": 50}, {"status": "pending", "limit": 20}, {"status": "completed"}])
            return await client.get("/api/v1/jobs", params=params)
        if kind == "enqueue":
            self._n += 1
            return await client.post("/api/v1/jobs", json={"type": "record", "args": self.args(self._n)})
        if kind == "batch":
            jobs = []
            for _ in range(10):
                self._n += 1
                jobs.append({"type": "record", "args": self.args(self._n)})
            return await client.post("/api/v1/jobs/batch", json={"jobs": jobs})
        if kind == "cancel":  # a recent job: pending, running or done (409), all fine
            return await client.post(f"/api/v1/jobs/{random.choice(self.known[-200:])}/cancel")
        return await client.get(random.choice(["/api/v1/stats", "/api/v1/queues", "/api/v1/workers"]))

    async def _stream(self, client: httpx.AsyncClient) -> None:
        while True:
            try:
                async with aconnect_sse(client, "GET", "/api/v1/events", timeout=None) as source:
                    if source.response.status_code != 200:
                        self.report.stream_errors.append(f"events -> {source.response.status_code}")
                        await asyncio.sleep(1.0)
                        continue
                    async for event in source.aiter_sse():
                        if event.event == "job":
                            self.report.events += 1
            except httpx.HTTPError as exc:
                self.report.stream_errors.append(f"events: {type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
