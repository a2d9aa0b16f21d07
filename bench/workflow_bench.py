"""Workflow benchmark: a fan-out of N steps and one fan-in step, against the same N + 1 jobs without dependencies.
Prints one JSON object.

    python bench/workflow_bench.py                           # SQLite and PostgreSQL (if reachable), N = 10,000
    python bench/workflow_bench.py --backend sqlite --n 2000

For each backend, each phase on a fresh database (see bench/run.py): enqueue, then `conveyor worker --processes W
--concurrency C` runs everything; the rate is (jobs - 1) over the time between the first and the last job's
`completed_at` (worker start-up excluded). `ratio` = workflow rate / plain rate (the SPEC's bar: at least 0.5).
Each backend runs `--repeat` pairs (plain, then workflow: both under the same load of a shared machine) and reports
medians, with each pair's ratio in `ratios`. `enqueue_s` is the one call that validates and stores the whole
workflow. A last phase runs a chain of `--chain` steps (default 300) with idle workers: `chain_gap_p50_ms` and
`chain_gap_p95_ms` say how long after its parent completed each step started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import fresh_url, make_app, query_jobs, start_workers, stop_workers
from conveyor import __version__

POLL_S = 0.05


def open_jobs(url: str) -> bool:
    statuses = ("waiting", "pending", "processing", "scheduled")
    probes = [f"EXISTS (SELECT 1 FROM conveyor_jobs WHERE status = '{s}')" for s in statuses]
    return bool(query_jobs(url, "SELECT " + " OR ".join(probes))[0])


def run_all(url: str, n: int, args: argparse.Namespace, log: Path) -> float:
    """Start the workers, wait until no job is open; the steady rate from the jobs' own finish times."""
    proc = start_workers(url, args.workers, args.concurrency, log)
    deadline = time.perf_counter() + args.timeout
    try:
        while open_jobs(url):
            if time.perf_counter() > deadline or proc.poll() is not None:
                raise RuntimeError(f"processing stalled (worker exit {proc.poll()}); log {log}")
            time.sleep(POLL_S)
    finally:
        stop_workers(proc)
    done, first, last = query_jobs(url, "SELECT count(*), min(completed_at), max(completed_at) FROM conveyor_jobs "
                                        "WHERE status = 'completed'")
    if done != n:
        raise RuntimeError(f"{done} of {n} jobs completed; log {log}")
    return float((n - 1) / (last - first))


def plain_phase(backend: str, args: argparse.Namespace, workdir: Path, n: int, k: int) -> float:
    url = fresh_url(backend, workdir, f"plain-{k}")
    app = make_app(url)
    for offset in range(0, n, 1000):
        app.enqueue_many("noop", [{"i": i} for i in range(offset, min(n, offset + 1000))])
    app.close()
    return run_all(url, n, args, workdir / f"{backend}-plain.log")


def workflow_phase(
    backend: str, args: argparse.Namespace, workdir: Path, n: int, k: int
) -> tuple[float, float]:
    url = fresh_url(backend, workdir, f"workflow-{k}")
    app = make_app(url)
    started = time.perf_counter()
    wf = app.workflow("fan-out-fan-in")
    steps = [wf.step(f"part-{i}", "noop", i=i) for i in range(n - 1)]
    wf.step("join", "noop", after=steps, i=-1)
    run = wf.enqueue()
    enqueue_s = time.perf_counter() - started
    rate = run_all(url, n, args, workdir / f"{backend}-workflow.log")
    final = app.require_workflow(run.id)
    app.close()
    if final.status != "completed" or final.steps_done != n:
        raise RuntimeError(f"the workflow ended {final.status} with {final.steps_done}/{n} steps done")
    return rate, enqueue_s


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """`--repeat` pairs of phases, plain then workflow, so both see the same load; medians, and each pair's ratio."""
    n = args.n + 1
    plain, flows, enqueues = [], [], []
    for k in range(args.repeat):
        plain.append(plain_phase(backend, args, workdir, n, k))
        rate, enqueue_s = workflow_phase(backend, args, workdir, n, k)
        flows.append(rate)
        enqueues.append(enqueue_s)
    return {
        "plain_jobs_per_s": round(statistics.median(plain)),
        "workflow_jobs_per_s": round(statistics.median(flows)),
        "ratio": round(statistics.median(f / p for f, p in zip(flows, plain, strict=True)), 3),
        "ratios": [round(f / p, 3) for f, p in zip(flows, plain, strict=True)],
        "enqueue_s": round(statistics.median(enqueues), 3),
        **(chain_phase(backend, args, workdir) if args.chain > 1 else {}),
    }


def chain_phase(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """A chain of `--chain` steps, each after the one before, run by idle workers: how long after its parent's
    completion each step started (its `started_at` minus the parent's `completed_at`)."""
    url = fresh_url(backend, workdir, "chain")
    app = make_app(url)
    wf = app.workflow("chain")
    previous = None
    for i in range(args.chain):
        previous = wf.step(f"step-{i}", "noop", i=i, after=[previous] if previous else [])
    run = wf.enqueue()
    run_all(url, args.chain, args, workdir / f"{backend}-chain.log")
    steps = {j.step: j for j in app.require_workflow(run.id).steps or []}
    app.close()
    gaps = []
    for i in range(1, args.chain):
        child, parent = steps[f"step-{i}"], steps[f"step-{i - 1}"]
        assert child.started_at is not None and parent.completed_at is not None
        gaps.append((child.started_at - parent.completed_at).total_seconds() * 1000)
    gaps.sort()
    return {"chain_steps": args.chain, "chain_gap_p50_ms": round(statistics.median(gaps), 2),
            "chain_gap_p95_ms": round(gaps[int(0.95 * (len(gaps) - 1))], 2)}


def pg_reachable() -> bool:
    try:
        import psycopg

        from bench.run import PG_ADMIN

        psycopg.connect(PG_ADMIN, connect_timeout=2).close()
    except Exception:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=10_000, help="fan-out steps (plus one fan-in step)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=10, help="slots per worker process")
    parser.add_argument("--chain", type=int, default=300, help="steps of the chain phase (0: no chain phase)")
    parser.add_argument("--repeat", type=int, default=2, help="pairs of phases per backend (medians reported)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.backend == "both" and not pg_reachable():
        backends = ["sqlite"]
    out: dict[str, Any] = {"version": __version__, "python": platform.python_version(), "n": args.n,
                           "load_1min": round(os.getloadavg()[0], 2),
                           "workers": args.workers, "concurrency": args.concurrency,
                           "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="conveyor-wf-bench-") as tmp:
        for backend in backends:
            out[backend] = bench_backend(backend, args, Path(tmp))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
