"""CPU per job of the worker processes, for comparing two checkouts on a machine whose wall-clock rates are noisy.

    python bench/worker_cpu.py CHECKOUT [--n 20000] [--db NAME]    # e.g. . and a `git worktree` of an older commit

Enqueues `--n` no-op jobs (bench/tasks.py) into a fresh PostgreSQL database, runs `conveyor worker --processes 2
--concurrency 10` of CHECKOUT (its own .venv) until all are completed, and prints one JSON object: the rate from the
first to the last completion, the worker processes' CPU (user + system, from getrusage of the finished children, so
start-up included; run with `--n 1` to measure start-up alone) and the machine's busy CPU over the run, each per
1,000 jobs. CPU time counts what the code costs, whatever else the machine is doing; run the two checkouts
alternately.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ADMIN = os.environ.get("CONVEYOR_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


def busy_ms() -> int:
    """The machine's non-idle CPU time so far, from /proc/stat (in USER_HZ = 10 ms)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) * 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--db", default="conveyor_worker_cpu")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    url = ADMIN.rsplit("/", 1)[0] + f"/{args.db}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db}"')
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "PYTHONPATH": str(checkout)}
    python = str(checkout / ".venv" / "bin" / "python")
    enqueue = ("from bench.tasks import app\n"
               f"for o in range(0, {args.n}, 1000):\n"
               f"    app.enqueue_many('noop', [{{'i': i}} for i in range(o, min(o + 1000, {args.n}))])\n"
               "app.close()\n")
    subprocess.run([python, "-c", enqueue], env=env, cwd=checkout, check=True)
    before, busy_before = resource.getrusage(resource.RUSAGE_CHILDREN), busy_ms()
    worker = subprocess.Popen(
        [python, "-m", "conveyor", "worker", "--app", "bench.tasks:app", "--db", url, "--concurrency", "10",
         "--processes", "2", "--log-level", "WARNING"],
        env=env, cwd=checkout, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        count = "SELECT count(*) FROM conveyor_jobs WHERE status = 'completed'"
        while conn.execute(count).fetchone()[0] < args.n:  # type: ignore[index]
            time.sleep(0.2)
        busy = busy_ms() - busy_before
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        row = conn.execute("SELECT min(completed_at), max(completed_at) FROM conveyor_jobs").fetchone()
    assert row is not None
    cpu_ms = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    per_k = 1000 / args.n
    print(json.dumps({
        "checkout": str(checkout), "n": args.n, "load_1min": round(os.getloadavg()[0], 2),
        "jobs_per_s": round((args.n - 1) / (row[1] - row[0])) if args.n > 1 and row[1] > row[0] else None,
        "worker_cpu_ms": round(cpu_ms), "worker_cpu_ms_per_1000_jobs": round(cpu_ms * per_k, 1),
        "machine_busy_ms_per_1000_jobs": round(busy * per_k, 1),
    }))


if __name__ == "__main__":
    sys.exit(main())
