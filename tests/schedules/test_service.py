"""The scheduler inside real workers: declared schedules synced at start, ticks fired on time and run, one job per
tick with two workers on one database, edits noticed live."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.job import JobStatus
from conveyor.schedules.service import SLEEP_CAP_S, Scheduler, SchedulerThread
from conveyor.settings import Settings
from conveyor.worker import Worker
from tests.conftest import wait_for
from tests.worker.test_worker import Background


@pytest.fixture
def fast(db_url: str, settings: Settings) -> Iterator[Conveyor]:
    app = Conveyor(db_url, settings=settings)
    yield app
    app.close()


def ticks_of(app: Conveyor, name: str) -> list[str]:
    jobs = app.list_jobs(limit=1000).jobs
    return sorted(j.metadata["scheduled_for"] for j in jobs if j.metadata.get("schedule") == name)


def test_run_once_sleeps_until_the_next_tick_at_most_a_second(fast: Conveyor) -> None:
    now = 1_000_000.0
    scheduler = Scheduler(fast, clock=lambda: now)
    assert scheduler.run_once() == SLEEP_CAP_S, "no schedule: the cap"
    fast.schedules.create(name="s", task="demo.echo", cron="* * * * * *")
    wait = scheduler.run_once()
    assert 0.0 <= wait <= SLEEP_CAP_S


def test_two_workers_fire_each_tick_once_and_run_it(db_url: str, settings: Settings) -> None:
    apps = [Conveyor(db_url, settings=settings) for _ in range(2)]
    for app in apps:

        @app.periodic("* * * * * *", name="every-second")
        @app.task
        def beat() -> str:
            return "beat"

    try:
        with Background(Worker(apps[0])) as one, Background(Worker(apps[1])) as two:
            wait_for(lambda: len(ticks_of(apps[0], "every-second")) >= 4, timeout=20, what="four ticks")
            one.stop()
            two.stop()
            one.join()
            two.join()
        ticks = ticks_of(apps[0], "every-second")
        assert len(ticks) == len(set(ticks)), f"a tick fired twice: {ticks}"
        assert len(apps[0].schedules.all()) == 1, "declared by both workers, stored once"
        done = [j for j in apps[0].list_jobs(limit=1000).jobs if j.status is JobStatus.COMPLETED]
        assert done and all(j.result == "beat" for j in done)
    finally:
        for app in apps:
            app.close()


def test_an_edit_is_noticed_live(fast: Conveyor) -> None:
    fast.schedules.create(name="late", task="demo.echo", cron="0 0 1 1 *")
    with Background(Worker(fast)) as bg:
        wait_for(lambda: fast.list_workers(), what="the worker")
        fast.schedules.update("late", cron="* * * * * *")
        wait_for(lambda: ticks_of(fast, "late"), timeout=10, what="a tick after the edit")
        bg.stop()
        bg.join()


def test_the_scheduler_thread_of_serve_without_a_worker(fast: Conveyor) -> None:
    fast.schedules.create(name="api-only", task="demo.echo", cron="* * * * * *")
    thread = SchedulerThread(fast)
    thread.start()
    try:
        wait_for(lambda: ticks_of(fast, "api-only"), timeout=10, what="a tick")
    finally:
        thread.stop()
    assert not thread.thread.is_alive()
