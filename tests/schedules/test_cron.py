"""Cron arithmetic: croniter's times in a real time zone, with both daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from conveyor.errors import InvalidArgumentsError
from conveyor.schedules.cron import MAX_TICKS, MISFIRE_GRACE_S, Cron, describe

BERLIN = ZoneInfo("Europe/Berlin")


def at(*parts: int, tz: ZoneInfo = BERLIN, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


def wall(ts: float) -> str:
    return datetime.fromtimestamp(ts, BERLIN).strftime("%Y-%m-%d %H:%M:%S%z")


def take(cron: Cron, after: float, n: int) -> list[str]:
    ticks = cron.ticks(after)
    return [wall(next(ticks)) for _ in range(n)]


def test_five_fields_six_with_seconds_and_aliases() -> None:
    start = datetime(2026, 1, 1, 10, 7, 3, tzinfo=UTC).timestamp()
    assert Cron("*/5 * * * *").next_after(start) == datetime(2026, 1, 1, 10, 10, tzinfo=UTC).timestamp()
    assert Cron("*/10 * * * * *").next_after(start) == start + 7
    assert Cron("@hourly").next_after(start) == datetime(2026, 1, 1, 11, tzinfo=UTC).timestamp()
    assert Cron("@daily").next_after(start) == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    assert Cron("0 9 * * *").next_after(datetime(2026, 1, 1, 9, tzinfo=UTC).timestamp()) == datetime(
        2026, 1, 2, 9, tzinfo=UTC
    ).timestamp(), "strictly after"


def test_time_zone_places_the_wall_time() -> None:
    nine_berlin = Cron("0 9 * * *", "Europe/Berlin").next_after(at(2026, 7, 1, 0, 0))
    assert datetime.fromtimestamp(nine_berlin, UTC).hour == 7  # CEST is UTC+2


def test_spring_forward_skips_the_tick_that_does_not_exist() -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 to 03:00, so 02:30 does not exist that day
    daily = Cron("30 2 * * *", "Europe/Berlin")
    assert take(daily, at(2026, 3, 28, 12, 0), 2) == ["2026-03-30 02:30:00+0200", "2026-03-31 02:30:00+0200"]
    every_half_hour = Cron("*/30 * * * *", "Europe/Berlin")
    assert take(every_half_hour, at(2026, 3, 29, 1, 10), 3) == [
        "2026-03-29 01:30:00+0100", "2026-03-29 03:00:00+0200", "2026-03-29 03:30:00+0200"
    ]


def test_fall_back_fires_the_repeated_hour_once() -> None:
    # 2026-10-25: Berlin's clocks go back from 03:00 CEST to 02:00 CET, so 02:00-02:59 happens twice
    daily = Cron("30 2 * * *", "Europe/Berlin")
    ticks = daily.ticks(at(2026, 10, 24, 12, 0))
    assert [wall(next(ticks)) for _ in range(2)] == ["2026-10-25 02:30:00+0200", "2026-10-26 02:30:00+0100"]
    every_half_hour = Cron("*/30 * * * *", "Europe/Berlin")
    assert take(every_half_hour, at(2026, 10, 25, 1, 40), 4) == [
        "2026-10-25 02:00:00+0200", "2026-10-25 02:30:00+0200", "2026-10-25 03:00:00+0100",
        "2026-10-25 03:30:00+0100",
    ]
    # from inside the second pass of the hour, the next tick is after it: its wall times already fired
    assert wall(every_half_hour.next_after(at(2026, 10, 25, 2, 10, fold=1))) == "2026-10-25 03:00:00+0100"


@pytest.mark.parametrize(
    ("expression", "field"),
    [("61 * * * *", "cron"), ("* * *", "cron"), ("* * * * * * *", "cron"), ("@reboot", "cron"), ("", "cron")],
)
def test_bad_expressions_are_refused_naming_the_field(expression: str, field: str) -> None:
    with pytest.raises(InvalidArgumentsError, match=f"^{field}: "):
        Cron(expression)


def test_an_expression_that_never_fires_is_refused() -> None:
    with pytest.raises(InvalidArgumentsError, match=r"^cron: '0 0 30 2 \*' never fires"):
        Cron("0 0 30 2 *").next_after(0.0)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidArgumentsError, match=r"^timezone: unknown time zone 'Mars/Olympus'"):
        Cron("* * * * *", "Mars/Olympus")


def test_described_in_words() -> None:
    assert describe("*/5 * * * *") == "Every 5 minutes"
    assert describe("*/10 * * * * *") == "Every 10 seconds"
    assert describe("@hourly") == "Every hour"
    assert "09:00" in describe("0 9 * * 1-5") and "Monday through Friday" in describe("0 9 * * 1-5")


def test_due_ticks_skip_the_missed_ones_unless_catching_up() -> None:
    hourly = Cron("0 * * * *")
    due, now = 3600.0, 5 * 3600.0 + 5
    assert hourly.due(due, now, catch_up=True) == [3600.0, 7200.0, 10800.0, 14400.0, 18000.0]
    assert hourly.due(due, now, catch_up=False) == [18000.0], "only the tick of the last moments"
    assert hourly.due(due, 18000.0 + MISFIRE_GRACE_S + 1, catch_up=False) == []
    every_second = Cron("* * * * * *")
    replay = every_second.due(0.0, 100_000.0, catch_up=True)
    assert len(replay) == MAX_TICKS and replay[:2] == [0.0, 1.0], "at most 100, oldest first"
    assert every_second.due(10.0, 5.0, catch_up=True) == [], "nothing due yet"
