"""Tasks the fault tests' real processes load with `--app tests.faults.tasks:app` (the database comes from --db).

`record` appends one line per attempt that ran to its end (`job_id attempt pid i`) to a file opened with O_APPEND
(the acceptance tests' `note`), so lines of several processes never interleave and a test can tell exactly which
attempt of which job ran where.
"""

from __future__ import annotations

import asyncio
import os

from conveyor import Conveyor, JobContext
from tests.acceptance.tasks import note, read_notes

app = Conveyor()
APP = "tests.faults.tasks:app"


def effects(path: str) -> list[tuple[str, int, int, int]]:
    """The lines `record` wrote: (job id, attempt, pid, i)."""
    return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in read_notes(path)]


@app.task(max_retries=20)  # faults may cost a job several attempts; none may cost it its run
async def record(
    ctx: JobContext, log: str, i: int, seconds: float = 0.0, size: int = 0, pad: str = ""
) -> dict[str, object]:
    """Waits `seconds`, then records its attempt; returns `size` bytes of result (`pad` and `size` make the database
    grow)."""
    if seconds:
        await asyncio.sleep(seconds)
    note(log, ctx.job_id, ctx.attempt, os.getpid(), i)
    return {"i": i, "attempt": ctx.attempt, "pid": os.getpid(), "pad": "x" * size}
