"""Module-level tasks for tests/worker/test_processes.py: a process task is imported by name in the child."""

from __future__ import annotations

import os
from typing import Any

from conveyor import Conveyor

app = Conveyor(demo_tasks=False)


@app.task(process=True)
def heavy(ctx: object, n: int) -> dict[str, int]:
    return {"sum": sum(range(n)), "pid": os.getpid()}


@app.task(process=True, timeout=0.5, max_retries=0)
def nap(ctx: object, seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@app.task(process=True)
def join(ctx: Any) -> dict[str, Any]:
    """A fan-in step in a child process: its parents' results came with the call."""
    return dict(ctx.parent_results)
