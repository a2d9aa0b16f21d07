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


def test_a_process_task_reads_its_parents_results(sqlite_url: str) -> None:
    app = process_tasks.app
    app.use_database(sqlite_url)
    try:
        wf = app.workflow("in-processes")
        a = wf.step("a", "heavy", n=10)
        b = wf.step("b", "heavy", n=20)
        wf.step("join", "join", after=[a, b])
        run = wf.enqueue()
        while drain(app):
            pass
        done = app.require_workflow(run.id)
        assert done.status == "completed"
        assert {k: v["sum"] for k, v in done.step("join").result.items()} == {"a": 45, "b": 190}
    finally:
        app.close()
