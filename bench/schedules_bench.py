"""Schedules benchmark: N schedules due in the same second, fired by one scheduler pass and by two racing processes;
prints one JSON object of figures.

    python bench/schedules_bench.py                      # SQLite file in a temp dir
    python bench/schedules_bench.py --backend postgres   # a fresh database `conveyor_schedules_bench` on 127.0.0.1

Measures the wall time from "all N are due" until every tick's job is stored (the SPEC's target: 1,000 in at most
2 s), with one process (`fire_due`), and with two processes evaluating the same due schedules at once (each tick
still makes one job: the figure checks it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conveyor import Conveyor  # noqa: E402

PG_ADMIN = os.environ.get("CONVEYOR_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_900_000_020.0  # a whole minute: the schedules' first tick is T0 + 60


def _url(backend: str, tmp: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/schedules-bench.db"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "conveyor_schedules_bench" WITH (FORCE)')
        conn.execute('CREATE DATABASE "conveyor_schedules_bench"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/conveyor_schedules_bench"


def _setup(url: str, n: int, round_no: int) -> None:
    app = Conveyor(url, clock=lambda: T0 + round_no * 3600)
    for old in app.schedules.all():
        app.schedules.delete(old.name)
    for i in range(n):
        app.schedules.create(name=f"r{round_no}-s{i:05d}", task="demo.echo", cron="* * * * *")
    app.close()


def _fire(url: str, now: float, out: Any) -> None:
    app = Conveyor(url)
    start = time.perf_counter()
    fired = len(app.schedules.fire_due(now))
    out.put((fired, time.perf_counter() - start))
    app.close()


def run(backend: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = _url(backend, tmp)
        figures: dict[str, Any] = {"backend": backend, "schedules": n, "python": platform.python_version(),
                                   "load_1min": round(os.getloadavg()[0], 2)}
        for round_no, processes in ((0, 1), (1, 2)):
            _setup(url, n, round_no)
            now = T0 + round_no * 3600 + 60.5
            queue: Any = multiprocessing.Queue()
            procs = [multiprocessing.Process(target=_fire, args=(url, now, queue)) for _ in range(processes)]
            start = time.perf_counter()
            for p in procs:
                p.start()
            results = [queue.get(timeout=120) for _ in procs]
            for p in procs:
                p.join(60)
            wall = time.perf_counter() - start
            fired = sum(r[0] for r in results)
            figures[f"{processes}_process"] = {
                "jobs": fired,
                "one_per_tick": fired == n,
                "fire_s": round(max(r[1] for r in results), 3),
                "wall_s_including_process_start": round(wall, 3),
            }
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--schedules", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(run(args.backend, args.schedules), indent=2))


if __name__ == "__main__":
    main()
