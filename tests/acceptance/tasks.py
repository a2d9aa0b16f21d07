"""Tasks the acceptance tests' real `conveyor worker` processes load with `--app tests.acceptance.tasks:app`.

Each task records what it did by appending one line to a file (`log`) opened with O_APPEND, so lines written by
several processes at once never interleave and a test can read exactly what ran, where and how often.
"""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor, JobContext


def note(log: str, *words: object) -> None:
    line = (" ".join(str(w) for w in words) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_notes(log: str) -> list[list[str]]:
    try:
        with open(log, encoding="utf-8") as f:
            return [line.split() for line in f.read().splitlines()]
    except FileNotFoundError:
        return []


def make_app(database_url: str | None = None) -> Conveyor:
    app = Conveyor(database_url)

    @app.task(max_retries=0)
    async def record(ctx: JobContext, log: str, key: str) -> str:
        note(log, "ran", key, ctx.job_id, ctx.attempt, os.getpid())
        return key

    @app.task(max_retries=0)
    async def effect(ctx: JobContext, log: str, i: int) -> None:
        note(log, i, ctx.job_id)

    @app.task(max_retries=0)
    async def sleepy(ctx: JobContext, log: str, key: str, seconds: float) -> str:
        note(log, "start", key, ctx.attempt, os.getpid())
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            note(log, "interrupted", key, ctx.attempt)
            raise
        note(log, "end", key, ctx.attempt)
        return key

    @app.task(max_retries=0)
    def sync_sleepy(ctx: JobContext, log: str, key: str, seconds: float, honour_cancel: bool = True) -> str:
        note(log, "start", key, ctx.attempt, os.getpid())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if honour_cancel and ctx.cancelled:
                note(log, "saw-cancel", key, ctx.attempt)
                return "stopped early"
            time.sleep(0.02)
        note(log, "end", key, ctx.attempt)
        return key

    @app.task(max_retries=3, retry_backoff=0.4, retry_backoff_max=2.0)
    def flaky(ctx: JobContext, log: str, key: str, fail_times: int) -> int:
        note(log, "attempt", key, ctx.attempt)
        if ctx.attempt <= fail_times:
            raise RuntimeError(f"{key} failed attempt {ctx.attempt}")
        return ctx.attempt

    @app.task(max_retries=3)
    async def slow_first(ctx: JobContext, log: str, key: str) -> int:
        """The first attempt hangs (the test kills its worker); any later attempt completes at once."""
        note(log, "start", key, ctx.attempt, os.getpid())
        if ctx.attempt == 1:
            await asyncio.sleep(120)
        return ctx.attempt

    @app.task(max_retries=1)
    def crash(ctx: JobContext, log: str, key: str) -> None:
        """Kills its own worker process, every time (a segfault, the OOM killer...)."""
        note(log, "crash", key, ctx.attempt, os.getpid())
        os._exit(17)

    return app


app = make_app()
