from __future__ import annotations

import os

import pytest

from conveyor import ConfigError, Conveyor, JobStatus
from conveyor.testing import drain
from tests.worker import process_tasks


def test_process_task_runs_in_another_process(sqlite_url: str) -> None:
    app = process_tasks.app
    app.use_database(sqlite_url)
    try:
        job = app.enqueue("heavy", {"n": 1000})
        assert drain(app) == 1
        done = app.require_job(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result["sum"] == sum(range(1000))
        assert done.result["pid"] != os.getpid()
    finally:
        app.close()


def test_process_task_must_be_sync_and_module_level(sqlite_app: Conveyor) -> None:
    async def coro(ctx: object) -> None: ...

    def local(ctx: object) -> None: ...

    with pytest.raises(ConfigError, match="module level"):
        sqlite_app.task(process=True)(coro)
    with pytest.raises(ConfigError, match="module level"):
        sqlite_app.task(process=True)(local)
