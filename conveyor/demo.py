"""Built-in demo tasks, for trying Conveyor out and for `conveyor check`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from conveyor.context import JobContext
from conveyor.plugins import Plugin

if TYPE_CHECKING:
    from conveyor.app import Conveyor


async def echo(ctx: JobContext, **args: Any) -> dict[str, Any]:
    """Return the job's arguments."""
    return args


async def sleep(ctx: JobContext, seconds: float = 1.0, steps: int = 10) -> dict[str, Any]:
    """Sleep `seconds` in `steps` steps, reporting progress after each; cancellation interrupts it."""
    steps = max(1, steps)
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        ctx.progress(100 * step / steps, stage="sleeping", done=step, total=steps)
    return {"slept": seconds}


async def fail(ctx: JobContext, message: str = "demo failure", times: int = -1) -> dict[str, Any]:
    """Fail the first `times` attempts (-1: every attempt), then succeed."""
    if times < 0 or ctx.attempt <= times:
        raise RuntimeError(f"{message} (attempt {ctx.attempt})")
    return {"succeeded_on_attempt": ctx.attempt}


def register_demo_tasks(app: Conveyor) -> None:
    app.task(name="demo.echo")(echo)
    app.task(name="demo.sleep")(sleep)
    app.task(name="demo.fail", retry_backoff=0.5, retry_backoff_max=5.0)(fail)


PLUGIN = Plugin("demo", tasks=register_demo_tasks)
