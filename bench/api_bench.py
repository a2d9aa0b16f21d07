"""The HTTP API's benchmark: prints one JSON object of figures.

    python bench/api_bench.py                               # POST /jobs at concurrency 32, then 500 SSE clients
    python bench/api_bench.py --requests 2000 --clients 100 --jobs 50     # a quicker run

1. `POST /api/v1/jobs` throughput: `conveyor serve --no-worker` on a fresh SQLite file, an async httpx client on
   loopback keeping `--concurrency` requests in flight (default 32) for `--requests` requests (after 200 warm-up).
2. Fan-out: a fresh server, `--clients` SSE clients (default 500) connected to `GET /api/v1/events`, then `--jobs`
   jobs (default 200, `demo.sleep` with 2 progress steps) enqueued in one batch and run by a separate
   `conveyor worker` process. Each client must receive every event of those jobs: the set of ids it got is compared
   with the outbox. Timed from the batch enqueue until the last client has every job's final event.
The server, the worker and this client share the machine (2 cores on CI), so the figures are end-to-end on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conveyor import Conveyor  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_API_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", "--db", url, "--port", str(port), "--no-worker", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------ POST /jobs
async def post_jobs(base: str, total: int, concurrency: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        body = {"type": "demo.echo", "args": {"hello": "world"}, "tags": ["bench"]}

        async def run(n: int, latencies: list[float]) -> None:
            for _ in range(n):
                start = time.perf_counter()
                response = await client.post("/api/v1/jobs", json=body)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 201:
                    raise RuntimeError(f"POST /jobs answered {response.status_code}: {response.text[:200]}")

        warm: list[float] = []
        await asyncio.gather(*(run(200 // concurrency + 1, warm) for _ in range(concurrency)))
        latencies: list[float] = []
        per_client = total // concurrency
        start = time.perf_counter()
        await asyncio.gather(*(run(per_client, latencies) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {
        "post_jobs_requests": len(latencies),
        "post_jobs_concurrency": concurrency,
        "post_jobs_per_s": round(len(latencies) / elapsed, 1),
        "post_jobs_p50_ms": round(q[49] * 1000, 2),
        "post_jobs_p99_ms": round(q[98] * 1000, 2),
    }


# ------------------------------------------------------------------------------------------ SSE fan-out
class Listener:
    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}  # event id -> when this client got it
        self.connected = asyncio.Event()


async def listen(client: httpx.AsyncClient, listener: Listener) -> None:
    async with client.stream("GET", "/api/v1/events") as response:
        response.raise_for_status()
        listener.connected.set()
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                listener.arrived[int(line[4:])] = time.perf_counter()


async def fan_out(base: str, db_url: str, clients: int, jobs: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    timeout = httpx.Timeout(60.0, read=None)
    listeners = [Listener() for _ in range(clients)]
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        tasks = [asyncio.create_task(listen(client, lst)) for lst in listeners]
        connect_start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(lst.connected.wait() for lst in listeners)), 120)
        connect_s = time.perf_counter() - connect_start
        app = Conveyor(db_url)
        start_id = app.backend.last_change_id()
        start = time.perf_counter()
        batch = [{"type": "demo.sleep", "args": {"seconds": 0.2, "steps": 2}} for _ in range(jobs)]
        response = await client.post("/api/v1/jobs/batch", json={"jobs": batch})
        response.raise_for_status()
        job_ids = {j["id"] for j in response.json()["jobs"]}
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "conveyor", "worker", "--db", db_url, "--processes", "0", "--concurrency", "50",
            "--burst", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )
        await asyncio.wait_for(worker.wait(), 300)
        # Every change of those jobs, from the outbox: what each client must have received.
        expected = {c.id for c in app.backend.changes_since(start_id, 1_000_000) if c.job_id in job_ids}
        app.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(expected <= lst.arrived.keys() for lst in listeners):
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    complete = [lst for lst in listeners if expected <= lst.arrived.keys()]
    delivered = sum(len(expected & lst.arrived.keys()) for lst in listeners)
    last = max((max(lst.arrived[i] for i in expected) for lst in complete), default=start)
    elapsed = last - start
    return {
        "sse_clients": clients,
        "sse_jobs": jobs,
        "sse_events_per_client": len(expected),
        "sse_clients_with_every_event": len(complete),
        "sse_events_delivered": delivered,
        "sse_connect_s": round(connect_s, 2),
        "sse_elapsed_s": round(elapsed, 2),
        "sse_deliveries_per_s": round(delivered / elapsed, 1) if elapsed > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    figures: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/post.db"
        proc, base = start_server(url)
        try:
            figures.update(asyncio.run(post_jobs(base, args.requests, args.concurrency)))
        finally:
            stop(proc)
        url = f"sqlite:///{tmp}/sse.db"
        proc, base = start_server(url)
        try:
            figures.update(asyncio.run(fan_out(base, url, args.clients, args.jobs)))
        finally:
            stop(proc)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
