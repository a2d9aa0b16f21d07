"""Conveyor's own benchmark: prints one JSON object of figures.

    python bench/run.py                       # SQLite file in a temp dir
    python bench/run.py --backend postgres    # a fresh database `conveyor_bench` on 127.0.0.1
    python bench/run.py --db postgresql://postgres@127.0.0.1:5432/mydb --processes 2   # that database, emptied

Measures: single enqueue (one call per job), batch enqueue (1,000 per call), no-op processing with W worker
processes (start-up excluded: timed from the first completed job to the last), and enqueue-to-start latency with an
idle worker (each job returns how long after its enqueue call began it started).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conveyor import Conveyor, __version__  # noqa: E402

PG_ADMIN = os.environ.get("CONVEYOR_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "conveyor_bench"
POLL_S = 0.05


def fresh_url(backend: str, workdir: Path, phase: str, db: str | None = None) -> str:
    if db is not None:
        return reset_db(db, workdir, phase)
    if backend == "sqlite":
        return f"sqlite:///{workdir}/{phase}.db"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DB}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_DB}"


def reset_db(db: str, workdir: Path, phase: str) -> str:
    """`--db`: PostgreSQL: the given database, Conveyor's tables emptied before each phase; SQLite: one file per phase
    beside the given path."""
    if db.startswith("sqlite"):
        return f"{db.removesuffix('.db')}-{phase}.db"
    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('conveyor_jobs') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute("TRUNCATE conveyor_jobs, conveyor_job_events, conveyor_workers, conveyor_queues, "
                         "conveyor_leaders, conveyor_groups")
    return db


def make_app(url: str) -> Conveyor:
    os.environ["CONVEYOR_DATABASE_URL"] = url
    import bench.tasks as tasks

    app = Conveyor(url)
    app.tasks.update(tasks.app.tasks)
    app.get_job("00000000-0000-0000-0000-000000000000")  # connect and create the schema before timing
    return app


def query_jobs(url: str, query: str) -> tuple[Any, ...]:
    """One row of a query on the jobs table (every phase has a fresh database holding only its own jobs)."""
    if url.startswith("sqlite"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            row = db.execute(query).fetchone()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


def any_open(url: str) -> bool:
    """Whether a job is still waiting or running: one probe of the partial indexes, so polling it costs the database
    next to nothing (a 20 ms poll of a counting query cost PostgreSQL 40 % as much CPU as the jobs it measured)."""
    statuses = ("pending", "processing", "scheduled")
    probes = [f"EXISTS (SELECT 1 FROM conveyor_jobs WHERE status = '{s}')" for s in statuses]
    return bool(query_jobs(url, "SELECT " + " OR ".join(probes))[0])


def finished(url: str) -> tuple[int, float | None, float | None]:
    """(jobs finished, first finish time, last finish time): the processing rate comes from the jobs' own finish
    times, not from when a poll saw them."""
    row = query_jobs(url, "SELECT count(*), min(completed_at), max(completed_at) FROM conveyor_jobs "
                          "WHERE status IN ('completed', 'failed')")
    return int(row[0]), row[1], row[2]


def start_workers(url: str, processes: int, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "conveyor", "worker", "--app", "bench.tasks:app", "--db", url,
           "--concurrency", str(concurrency), "--processes", str(processes), "--log-level", "WARNING"]
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_workers(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def bench_single(app: Conveyor, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        app.enqueue("noop", {"i": i})
    return n / (time.perf_counter() - started)


def bench_batch(app: Conveyor, n: int, batch: int) -> float:
    started = time.perf_counter()
    for offset in range(0, n, batch):
        app.enqueue_many("noop", [{"i": i} for i in range(offset, min(n, offset + batch))])
    return n / (time.perf_counter() - started)


def bench_processing(app: Conveyor, url: str, n: int, args: argparse.Namespace, log: Path) -> dict[str, Any]:
    task = "noop_sync" if args.sync else "noop"
    for offset in range(0, n, 1000):
        if args.keys:  # fair limits per key: the jobs spread over `keys` group keys, round-robin
            app.enqueue_batch([{"type": task, "args": {"i": i}, "group_key": f"key-{i % args.keys}"}
                               for i in range(offset, min(n, offset + 1000))])
        else:
            app.enqueue_many(task, [{"i": i} for i in range(offset, min(n, offset + 1000))])
    launched = time.perf_counter()
    proc = start_workers(url, args.workers, args.concurrency, log)
    deadline = launched + args.timeout
    try:
        while any_open(url):
            if time.perf_counter() > deadline or proc.poll() is not None:
                done = finished(url)[0]
                raise RuntimeError(f"processing stalled at {done}/{n} (worker exit {proc.poll()}); log {log}")
            time.sleep(POLL_S)
        wall = time.perf_counter() - launched
        done, first, last = finished(url)
        if done != n:
            raise RuntimeError(f"{done} of {n} jobs finished; log {log}")
        assert first is not None and last is not None
        # from the first finished job to the last: worker start-up excluded
        steady = (n - 1) / (last - first) if last > first else float("nan")
        figures = {"process_jobs_per_s": round(steady), "process_wall_jobs_per_s": round(n / wall)}
        return {"proc": proc, **figures}
    except BaseException:
        stop_workers(proc)
        raise


def bench_latency(app: Conveyor, count: int, rate: float) -> dict[str, float]:
    jobs = []
    for i in range(count):
        jobs.append(app.enqueue("latency", {"i": i, "enqueued_at": time.time()}))
        time.sleep(1.0 / rate)
    samples = [app.wait(job.id, poll_interval=0.01, timeout=30).result for job in jobs]
    samples.sort()
    return {
        "latency_p50_ms": round(1000 * statistics.median(samples), 2),
        "latency_p99_ms": round(1000 * samples[max(0, int(len(samples) * 0.99) - 1)], 2),
        "latency_max_ms": round(1000 * samples[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--db", default=None, help="database URL to use instead of a fresh one per phase "
                        "(postgresql://...: Conveyor's tables are emptied before each phase)")
    parser.add_argument("--n", type=int, default=20000, help="jobs for the processing phase")
    parser.add_argument("--single-n", type=int, default=5000, help="jobs for the single-enqueue phase")
    parser.add_argument("--batch-n", type=int, default=50000, help="jobs for the batch-enqueue phase")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", "--processes", dest="workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=10, help="slots per worker process")
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="latency jobs enqueued per second")
    parser.add_argument("--keys", type=int, default=0, help="processing phase: spread the jobs over this many "
                        "group keys (fair limits per key; 0: no keys)")
    parser.add_argument("--sync", action="store_true", help="sync no-op tasks (thread pool) instead of async")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite files go (default: system temp)")
    args = parser.parse_args()
    if args.db is not None:
        args.backend = "sqlite" if args.db.startswith("sqlite") else "postgres"

    workdir = Path(tempfile.mkdtemp(prefix="conveyor-bench-", dir=args.sqlite_dir))
    os.environ["CONVEYOR_DATA_DIR"] = str(workdir / "data")
    result: dict[str, Any] = {
        "version": __version__,
        "backend": args.backend,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "sync_tasks": args.sync,
    }
    try:
        app = make_app(fresh_url(args.backend, workdir, "single", args.db))
        result["enqueue_jobs_per_s"] = round(bench_single(app, args.single_n))
        app.close()

        app = make_app(fresh_url(args.backend, workdir, "batch", args.db))
        result["batch_enqueue_jobs_per_s"] = round(bench_batch(app, args.batch_n, args.batch))
        app.close()

        url = fresh_url(args.backend, workdir, "process", args.db)
        app = make_app(url)
        processing = bench_processing(app, url, args.n, args, workdir / "worker.log")
        proc = processing.pop("proc")
        result.update(processing, n=args.n)
        try:
            time.sleep(1.0)  # let the worker go idle
            result.update(bench_latency(app, args.latency_n, args.latency_rate))
        finally:
            stop_workers(proc)
        app.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
