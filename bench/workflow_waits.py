"""What the workers' database sessions wait on during one phase of bench/workflow_bench.py (PostgreSQL).

    python bench/workflow_waits.py workflow           # the 10,000-step fan-out and its fan-in step
    python bench/workflow_waits.py plain              # the same jobs without dependencies

Runs the phase on a database of its own (`--db-name`, default conveyor_waits_bench) and samples pg_stat_activity every
5 ms while it runs; prints the rate and, of the samples of `conveyor_work` calls that were active, the share spent in
each wait event (`Lock:transactionid`: waiting for another cycle's commit to free a row, such as a fan-in step's
counter; `IO:WALSync`: the commit's flush; `-:-`: running).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.run as bench_run
from bench import workflow_bench

SAMPLE_S = 0.005


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["plain", "workflow"])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--db-name", default="conveyor_waits_bench")
    cli = parser.parse_args()
    import psycopg

    bench_run.PG_DB = cli.db_name
    args = argparse.Namespace(workers=2, concurrency=10, timeout=120.0)
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(bench_run.PG_ADMIN, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT state, coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-') "
                    "FROM pg_stat_activity WHERE datname = %s AND query LIKE '%%conveyor_work%%' "
                    "AND pid <> pg_backend_pid()", (cli.db_name,)).fetchall()
                seen.update((str(state), str(wait)) for state, wait in rows)
                time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-waits-"))
    try:
        if cli.phase == "plain":
            rate = workflow_bench.plain_phase("postgres", args, workdir, cli.n, 0)
        else:
            rate, _ = workflow_bench.workflow_phase("postgres", args, workdir, cli.n, 0)
    finally:
        stop.set()
        sampler.join()
    active = {wait: n for (state, wait), n in seen.items() if state == "active"}
    total = sum(active.values()) or 1
    print(f"{cli.phase}: {rate:.0f} jobs/s, {total} active samples")
    for wait, n in sorted(active.items(), key=lambda item: -item[1]):
        print(f"  {100 * n / total:5.1f} %  {wait}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
