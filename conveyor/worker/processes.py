"""Running a task's function in a separate process (`@app.task(process=True)`), for CPU-heavy work that would
otherwise hold the GIL. The child imports the task by module and name, so the function must live at module level."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any


class ProcessContext:
    """The context a task gets in a child process: identity and a logger; progress is not reported from there."""

    def __init__(
        self, job_id: str, job_type: str, attempt: int, parent_results: dict[str, Any] | None = None
    ) -> None:
        self.job_id = job_id
        self.type = job_type
        self.attempt = attempt
        self.parent_results = parent_results or {}
        self.cancelled = False
        self.logger = logging.getLogger(f"conveyor.task.{job_type}")

    def progress(self, percent: float, **info: Any) -> None:
        """Accepted and ignored: a process task cannot report progress."""


def run_in_child(
    module: str, qualname: str, job: tuple[str, str, int, dict[str, Any]], takes_ctx: bool, kwargs: dict[str, Any]
) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    fn = getattr(target, "fn", target)  # the module attribute is the Task wrapping the function
    args = (ProcessContext(*job),) if takes_ctx else ()
    return fn(*args, **kwargs)


def make_pool(workers: int) -> ProcessPoolExecutor:
    # forkserver: children start from a clean server process, not a fork of a threaded asyncio worker
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
