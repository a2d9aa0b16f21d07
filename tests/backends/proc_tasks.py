"""Module-level tasks for the real-process tests (`conveyor worker --app tests.backends.proc_tasks:app`)."""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor, JobContext

app = Conveyor()  # the database comes from --db


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.task(max_retries=3)
async def slow_first(ctx: JobContext, seconds: float, log: str) -> dict[str, int]:
    """The first attempt takes `seconds`; later ones finish at once. Each start is written to `log`."""
    _append(log, f"{ctx.job_id} {ctx.attempt} {os.getpid()}")
    if ctx.attempt == 1:
        await asyncio.sleep(seconds)
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@app.task(max_retries=1)
def die(ctx: JobContext) -> None:
    """Kills its own process, every attempt."""
    os._exit(3)


@app.task(max_retries=20)
async def effect(ctx: JobContext, n: int, log: str, seconds: float = 0.0) -> int:
    """An idempotent side effect: writes its job id once per run to `log`."""
    if seconds:
        await asyncio.sleep(seconds)
    _append(log, f"{ctx.job_id} {n}")
    return n


@app.task(max_retries=20)
async def keyed_work(ctx: JobContext, n: int, seconds: float = 0.0, log: str = "", key: str = "") -> int:
    """A job of some key (fair limits): takes `seconds`; with `log`, writes when it starts and ends there."""
    if log:
        _append(log, f"start {ctx.job_id} {ctx.attempt} {key} {os.getpid()} {time.time()!r}")
    if seconds:
        await asyncio.sleep(seconds)
    if log:
        _append(log, f"end {ctx.job_id} {ctx.attempt} {key} {os.getpid()} {time.time()!r}")
    return n
