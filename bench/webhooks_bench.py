"""Webhooks benchmark: prints one JSON object of figures.

    python bench/webhooks_bench.py                       # SQLite file in a temp dir
    python bench/webhooks_bench.py --backend postgres    # a fresh database `conveyor_webhooks_bench`

Measures, each phase on a fresh database, the receiver a local uvicorn app answering 204 (bench/webhook_sink.py):
- `process_*`: `--n` no-op jobs processed by `--workers` worker processes (bench/run.py's processing phase) with no
  subscription, then with one subscription to `job.completed` (its deliveries sent by the same workers meanwhile);
  `overhead_pct` is how much slower the second is. `completed_deliveries_done_s`: from the first job's start until
  the last delivery was delivered.
- `deliveries_per_s`: `--n` deliveries already in the outbox (jobs of a queue no worker serves, a subscription to
  `job.created`) sent by `--workers` worker processes: (n - 1) over the time between the first and the last
  `delivered_at`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.run  # noqa: E402
from bench.run import bench_processing, fresh_url, make_app, query_jobs, stop_workers  # noqa: E402
from conveyor import Conveyor  # noqa: E402
from conveyor.webhooks import subscriptions  # noqa: E402
from conveyor.webhooks.subscriptions import WebhookSpec  # noqa: E402
from tests.api.conftest import free_port  # noqa: E402

bench.run.PG_DB = "conveyor_webhooks_bench"  # its own database: bench/run.py may run beside it


def start_sink(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "bench.webhook_sink:app", "--port", str(port), "--log-level", "warning",
           "--no-access-log", "--http", "httptools"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the sink did not start")


def deliveries(url: str) -> tuple[int, int, float | None, float | None]:
    row = query_jobs(url, "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = "
                          "'delivered'), min(delivered_at), max(delivered_at) FROM conveyor_webhook_deliveries")
    return int(row[0]), int(row[1]), row[2], row[3]


def wait_delivered(url: str, n: int, timeout: float) -> tuple[float, float]:
    deadline = time.monotonic() + timeout
    while True:
        pending, delivered, first, last = deliveries(url)
        if delivered >= n and pending == 0:
            assert first is not None and last is not None
            return first, last
        if time.monotonic() > deadline:
            raise RuntimeError(f"{delivered} of {n} deliveries delivered, {pending} pending")
        time.sleep(0.05)


def allow_private(app: Conveyor) -> Conveyor:
    os.environ["CONVEYOR_WEBHOOK_ALLOW_PRIVATE"] = "true"
    fresh = Conveyor(app.database_url)
    fresh.tasks.update(app.tasks)
    app.close()
    return fresh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--workers", "--processes", dest="workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--keys", type=int, default=0, help="bench/run.py's processing phase: group keys (0: none)")
    args = parser.parse_args()
    os.environ["CONVEYOR_WEBHOOK_ALLOW_PRIVATE"] = "true"
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-webhooks-bench-"))
    port = free_port()
    sink = start_sink(port)
    result: dict[str, Any] = {"backend": args.backend, "workers": args.workers, "n": args.n, "cpus": os.cpu_count()}
    try:
        url = fresh_url(args.backend, workdir, "plain")
        app = make_app(url)
        plain = bench_processing(app, url, args.n, args, workdir / "plain.log")
        stop_workers(plain.pop("proc"))
        app.close()
        result["process_jobs_per_s_without"] = plain["process_jobs_per_s"]

        url = fresh_url(args.backend, workdir, "hooked")
        app = allow_private(make_app(url))
        subscriptions.create(app, WebhookSpec(url=f"http://127.0.0.1:{port}/hook", events=["job.completed"]))
        hooked = bench_processing(app, url, args.n, args, workdir / "hooked.log")
        started = query_jobs(url, "SELECT min(started_at) FROM conveyor_jobs")[0]
        try:
            _, last = wait_delivered(url, args.n, args.timeout)
        finally:
            stop_workers(hooked.pop("proc"))
        app.close()
        result["process_jobs_per_s_with_subscription"] = hooked["process_jobs_per_s"]
        result["overhead_pct"] = round(100 * (plain["process_jobs_per_s"] / hooked["process_jobs_per_s"] - 1), 1)
        result["completed_deliveries_done_s"] = round(last - started, 2)

        url = fresh_url(args.backend, workdir, "send")
        app = allow_private(make_app(url))
        subscriptions.create(app, WebhookSpec(url=f"http://127.0.0.1:{port}/hook", events=["job.created"]))
        for offset in range(0, args.n, 1000):
            app.enqueue_many("noop", [{"i": i} for i in range(offset, min(args.n, offset + 1000))], queue="parked")
        cmd = [sys.executable, "-m", "conveyor", "worker", "--app", "bench.tasks:app", "--db", url, "--queues",
               "nothing", "--processes", str(args.workers), "--log-level", "WARNING"]
        env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
        with (workdir / "send.log").open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            first, last = wait_delivered(url, args.n, args.timeout)
        finally:
            stop_workers(proc)
        app.close()
        result["deliveries_per_s"] = round((args.n - 1) / (last - first))
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
