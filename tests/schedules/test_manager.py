"""Schedules on both backends: stored and changed through `app.schedules`, fired once per tick however many
processes race for it, missed ticks skipped or replayed, and `@app.periodic` synced without duplicates."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from conveyor import Conveyor
from conveyor.errors import (
    ConfigError,
    InvalidArgumentsError,
    InvalidStateError,
    ScheduleNotFoundError,
    UnknownTaskError,
)
from conveyor.job import Job
from conveyor.settings import Settings

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sapp(db_url: str, settings: Settings, clock: Clock) -> Iterator[Conveyor]:
    app = Conveyor(db_url, settings=settings, clock=clock)
    yield app
    app.close()


def schedule_jobs(app: Conveyor, name: str) -> list[Job]:
    return [j for j in app.list_jobs(limit=1000).jobs if j.metadata.get("schedule") == name]


def test_create_read_change_delete(sapp: Conveyor) -> None:
    made = sapp.schedules.create(name="tidy", task="demo.echo", cron="*/5 * * * *", args={"x": 1}, tags=["t"])
    assert made.next_run_at == T0 + 300 and made.description == "Every 5 minutes"
    assert [s.name for s in sapp.schedules.all()] == ["tidy"]
    assert sapp.schedules.get("tidy").to_dict()["next_run_at"] == "2026-06-01T12:05:00Z"
    with pytest.raises(InvalidStateError, match="exists"):
        sapp.schedules.create(name="tidy", task="demo.echo", cron="* * * * *")
    changed = sapp.schedules.update("tidy", cron="0 * * * *", timezone="Europe/Berlin", priority=7)
    assert changed.next_run_at == T0 + 3600 and changed.priority == 7 and changed.args == {"x": 1}
    paused = sapp.schedules.pause("tidy")
    assert paused.paused and paused.to_dict()["next_run_at"] is None
    assert sapp.schedules.resume("tidy").paused is False
    sapp.schedules.delete("tidy")
    with pytest.raises(ScheduleNotFoundError):
        sapp.schedules.get("tidy")
    with pytest.raises(ScheduleNotFoundError):
        sapp.schedules.delete("tidy")


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"cron": "61 * * * *"}, InvalidArgumentsError, "^cron: "),
        ({"cron": "* * *"}, InvalidArgumentsError, "^cron: "),
        ({"timezone": "Nowhere/City"}, InvalidArgumentsError, "^timezone: "),
        ({"task": "no.such.task"}, UnknownTaskError, "^task: unknown task type"),
        ({"name": "n" * 300}, InvalidArgumentsError, "^name: "),
        ({"task": "demo.sleep", "args": {"seconds": "long"}}, InvalidArgumentsError, "^args: "),
        ({"name": "nul\x00"}, InvalidArgumentsError, "^name: must not contain NUL"),
        ({"name": "  "}, InvalidArgumentsError, "^name: must not be blank"),
        ({"queue": "q\x00"}, InvalidArgumentsError, "^queue: "),
        ({"tags": ["t\x00"]}, InvalidArgumentsError, "^tags: "),
        ({"priority": True}, InvalidArgumentsError, "^priority: must be an integer"),
        ({"max_retries": 1.5}, InvalidArgumentsError, "^max_retries: "),
        ({"args": {"x": float("nan")}}, InvalidArgumentsError, "^args: "),
    ],
)
def test_bad_schedules_are_refused_and_nothing_is_stored(
    sapp: Conveyor, fields: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        sapp.schedules.create(**{"name": "bad", "task": "demo.echo", "cron": "* * * * *", **fields})
    assert sapp.schedules.all() == []


def test_a_due_tick_enqueues_one_job_with_its_metadata(sapp: Conveyor, clock: Clock) -> None:
    sapp.schedules.create(name="tick", task="demo.echo", cron="* * * * *", args={"a": 1}, queue="cron", priority=3)
    assert sapp.schedules.fire_due(T0 + 30) == []
    clock.now = T0 + 61
    (job,) = sapp.schedules.fire_due()
    assert job.metadata == {"schedule": "tick", "scheduled_for": "2026-06-01T12:01:00Z"}
    assert (job.args, job.queue, job.priority) == ({"a": 1}, "cron", 3)
    assert sapp.schedules.fire_due() == [], "the tick is taken"
    stored = sapp.schedules.get("tick")
    assert stored.next_run_at == T0 + 120 and stored.last_run_at == T0 + 60 and stored.last_job_id == job.id
    assert [j.id for j in schedule_jobs(sapp, "tick")] == [job.id]


def test_paused_schedule_does_not_fire(sapp: Conveyor) -> None:
    sapp.schedules.create(name="p", task="demo.echo", cron="* * * * *", paused=True)
    assert sapp.schedules.fire_due(T0 + 3600) == []
    assert sapp.schedules.next_due() is None


def test_processes_racing_for_a_tick_make_one_job(db_url: str, settings: Settings) -> None:
    """Eight apps (eight connections, as eight processes would have) evaluate the same due ticks at once."""
    apps = [Conveyor(db_url, settings=settings, clock=Clock()) for _ in range(8)]
    try:
        apps[0].schedules.create(name="race", task="demo.echo", cron="* * * * * *")
        for tick in range(1, 6):
            barrier = threading.Barrier(len(apps))
            fired: list[list[Job]] = [[] for _ in apps]

            def evaluate(i: int, now: float, barrier: threading.Barrier, fired: list[list[Job]]) -> None:
                barrier.wait()
                fired[i] = apps[i].schedules.fire_due(now)

            threads = [
                threading.Thread(target=evaluate, args=(i, T0 + tick + 0.5, barrier, fired)) for i in range(len(apps))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sum(len(f) for f in fired) == 1, f"tick {tick}: {[len(f) for f in fired]}"
        jobs = schedule_jobs(apps[0], "race")
        assert sorted(j.metadata["scheduled_for"] for j in jobs) == [
            f"2026-06-01T12:00:0{s}Z" for s in range(1, 6)
        ]
    finally:
        for app in apps:
            app.close()


def test_a_restart_does_not_enqueue_a_tick_again(db_url: str, settings: Settings) -> None:
    first = Conveyor(db_url, settings=settings, clock=Clock())
    first.schedules.create(name="once", task="demo.echo", cron="* * * * *")
    assert len(first.schedules.fire_due(T0 + 60)) == 1
    first.run_worker(burst=True, handle_signals=False)  # the tick's job completes: its unique key is free again
    first.close()
    again = Conveyor(db_url, settings=settings, clock=Clock())
    try:
        assert again.schedules.fire_due(T0 + 60) == []
        assert len(schedule_jobs(again, "once")) == 1
    finally:
        again.close()


def test_a_tick_whose_job_exists_is_not_enqueued_twice(sapp: Conveyor) -> None:
    """The second guard: an open job holding the tick's key is the tick's job (the database keeps the key unique)."""
    sapp.schedules.create(name="key", task="demo.echo", cron="* * * * *")
    existing = sapp.schedules._job(sapp.schedules.get("key"), T0 + 60, T0)
    sapp.backend.insert_jobs([existing], T0)
    assert sapp.schedules.fire_due(T0 + 61) == []
    assert [j.id for j in schedule_jobs(sapp, "key")] == [existing.id]
    assert sapp.schedules.get("key").last_job_id == existing.id


def test_missed_ticks_are_skipped(sapp: Conveyor) -> None:
    sapp.schedules.create(name="skip", task="demo.echo", cron="0 * * * *")
    assert sapp.schedules.fire_due(T0 + 5 * 3600 + 30) == []  # five hours down: every tick was missed
    assert sapp.schedules.get("skip").next_run_at == T0 + 6 * 3600
    assert schedule_jobs(sapp, "skip") == []


def test_catch_up_replays_missed_ticks_oldest_first(sapp: Conveyor) -> None:
    sapp.schedules.create(name="replay", task="demo.echo", cron="0 * * * *", catch_up=True)
    fired = sapp.schedules.fire_due(T0 + 5 * 3600 + 30)
    assert [j.metadata["scheduled_for"][11:16] for j in fired] == ["13:00", "14:00", "15:00", "16:00", "17:00"]
    assert sapp.schedules.get("replay").next_run_at == T0 + 6 * 3600
    assert sapp.schedules.fire_due(T0 + 5 * 3600 + 31) == []


def test_catch_up_replays_at_most_100(sapp: Conveyor) -> None:
    sapp.schedules.create(name="many", task="demo.echo", cron="* * * * *", catch_up=True)
    fired = sapp.schedules.fire_due(T0 + 500 * 60 + 1)
    assert len(fired) == 100 and fired[0].metadata["scheduled_for"] == "2026-06-01T12:01:00Z"
    assert sapp.schedules.get("many").next_run_at == T0 + 501 * 60


def test_trigger_enqueues_now_without_moving_the_ticks(sapp: Conveyor) -> None:
    sapp.schedules.create(name="now", task="demo.echo", cron="0 0 1 1 *", args={"k": "v"})
    job = sapp.schedules.trigger("now")
    assert job.args == {"k": "v"} and job.metadata["schedule"] == "now"
    stored = sapp.schedules.get("now")
    assert stored.last_job_id == job.id and stored.next_run_at == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    with pytest.raises(ScheduleNotFoundError):
        sapp.schedules.trigger("missing")


def test_periodic_is_synced_by_name_never_twice(db_url: str, settings: Settings) -> None:
    def declare(cron: str) -> Conveyor:
        app = Conveyor(db_url, settings=settings, clock=Clock())

        @app.periodic(cron, name="nightly", args={"seconds": 0}, timezone="Europe/Berlin", queue="cron")
        @app.task
        def nap(seconds: float) -> None: ...

        @app.periodic("*/5 * * * *")
        def bare() -> str:
            return "ok"

        assert set(app.tasks) >= {"nap", "bare"}
        return app

    first = declare("0 3 * * *")
    assert first.schedules.sync() == 2
    assert first.schedules.sync() == 0, "as stored: nothing changes"
    first.schedules.pause("nightly")
    first.close()
    second = declare("0 4 * * *")  # the next release changes the hour
    try:
        assert second.schedules.sync() == 1
        stored = {s.name: s for s in second.schedules.all()}
        assert sorted(stored) == ["bare", "nightly"]
        nightly = stored["nightly"]
        assert (nightly.cron, nightly.timezone, nightly.queue, nightly.args) == (
            "0 4 * * *", "Europe/Berlin", "cron", {"seconds": 0}
        )
        assert nightly.paused, "a pause made by people stays"
    finally:
        second.close()


def test_periodic_with_a_bad_cron_fails_at_declaration(sqlite_app: Conveyor) -> None:
    with pytest.raises(InvalidArgumentsError, match=r"^cron: "):
        sqlite_app.periodic("* * *")(lambda: None)


def test_two_periodic_declarations_of_one_name_are_refused(sqlite_app: Conveyor) -> None:
    @sqlite_app.periodic("0 * * * *", name="twice")
    def first() -> None: ...

    with pytest.raises(ConfigError, match="twice"):

        @sqlite_app.periodic("30 * * * *", name="twice")
        def second() -> None: ...
