"""Tasks the fault tests' real processes load with `--app tests.faults.tasks:app` (the database comes from --db).

`record` appends one line per attempt that ran to its end (`job_id attempt pid i`) to a file opened with O_APPEND, so
lines of several processes never interleave and a test can tell exactly which attempt of which job ran where.
"""

from __future__ import annotations

import asyncio
import os

from conveyor import Conveyor, JobContext

app = Conveyor()
APP = "tests.faults.tasks:app"


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def effects(path: str) -> list[tuple[str, int, int, int]]:
    """The lines `record` wrote: (job id, attempt, pid, i)."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [line.split() for line in f.read().splitlines()]
    except FileNotFoundError:
        return []
    return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


@app.task(max_retries=20)  # faults may cost a job several attempts; none may cost it its run
async def record(
    ctx: JobContext, log: str, i: int, seconds: float = 0.0, size: int = 0, pad: str = ""
) -> dict[str, object]:
    """Waits `seconds`, then records its attempt; returns `size` bytes of result (`pad` and `size` make the database
    grow)."""
    if seconds:
        await asyncio.sleep(seconds)
    append(log, f"{ctx.job_id} {ctx.attempt} {os.getpid()} {i}")
    return {"i": i, "attempt": ctx.attempt, "pid": os.getpid(), "pad": "x" * size}
