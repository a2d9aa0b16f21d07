"""Tasks the benchmark's worker processes run (`--app bench.tasks:app`)."""

from __future__ import annotations

import time

from conveyor import Conveyor, JobContext

app = Conveyor()  # CONVEYOR_DATABASE_URL, set by bench/run.py


@app.task(max_retries=0)
async def noop(ctx: JobContext, i: int) -> None:
    return None


@app.task(max_retries=0)
def noop_sync(ctx: JobContext, i: int) -> None:
    return None


@app.task(max_retries=0)
async def latency(ctx: JobContext, i: int, enqueued_at: float) -> float:
    """Returns how long after the enqueue call began this job started (same machine, same clock)."""
    return time.time() - enqueued_at
