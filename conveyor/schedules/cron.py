"""Cron arithmetic: croniter parses an expression and steps through its wall-clock times, `zoneinfo` places them in
a time zone, cron-descriptor puts the expression in words. Nothing of that is written here, only the rule for the
two daylight-saving changes a year: a wall time that does not exist (the clocks jump over it) is skipped, and one
that occurs twice (the clocks go back) fires once, at its first occurrence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import get_description
from croniter import CroniterBadDateError, croniter

from conveyor.errors import InvalidArgumentsError

ALIASES = {  # the @-names croniter knows, as the five fields cron-descriptor describes
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_TICKS = 100  # the most missed ticks a catch-up replays
MISFIRE_GRACE_S = 10.0  # a tick later than this was missed (nothing ran), not merely late


@dataclass(frozen=True, slots=True)
class Cron:
    """A valid cron expression (5 fields, 6 with a leading seconds field, or an @-name) in a time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        _fields(self.expression)
        zone(self.timezone)

    @property
    def description(self) -> str:
        return describe(self.expression)

    def next_after(self, after: float) -> float:
        """The first tick strictly after `after` (epoch seconds)."""
        return next(self.ticks(after))

    def ticks(self, after: float) -> Iterator[float]:
        """The ticks strictly after `after`, in order (epoch seconds)."""
        tz = zone(self.timezone)
        local = datetime.fromtimestamp(after, tz).replace(tzinfo=None)
        steps = croniter(_fields(self.expression), local.replace(microsecond=0), second_at_beginning=True)
        while True:
            try:
                wall: datetime = steps.get_next(datetime)
            except CroniterBadDateError:  # `0 0 30 2 *`: a valid expression whose days never come
                raise InvalidArgumentsError(f"cron: {self.expression!r} never fires") from None
            first = wall.replace(tzinfo=tz, fold=0)
            if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
                continue  # in the gap of a spring-forward change: this wall time does not exist that day
            at = first.timestamp()
            if at > after:
                yield at

    def due(self, due: float, now: float, catch_up: bool, limit: int = MAX_TICKS) -> list[float]:
        """The ticks to fire now, oldest first, when the next stored tick is `due`: with `catch_up`, every tick from
        `due` to `now` (the oldest `limit`); without, only those of the last MISFIRE_GRACE_S (a tick is late by
        that much when the processes were busy; older ones were missed while nothing ran, and are skipped)."""
        start = due if catch_up else max(due, now - MISFIRE_GRACE_S)
        out: list[float] = [due] if start <= due <= now else []
        for at in self.ticks(max(due, start - 1e-6)):
            if at > now or len(out) >= limit:
                break
            out.append(at)
        return out


@lru_cache(maxsize=1024)
def _fields(expression: str) -> str:
    text = " ".join(expression.split())
    if text.lower() in ALIASES:
        return ALIASES[text.lower()]
    count = len(text.split(" "))
    if count not in (5, 6):
        raise InvalidArgumentsError(
            f"cron: {expression!r} has {count} fields; give 5 (minute hour day month weekday), 6 with a leading "
            "seconds field, or one of " + ", ".join(ALIASES)
        )
    if not croniter.is_valid(text, second_at_beginning=True):
        raise InvalidArgumentsError(f"cron: {expression!r} is not a valid cron expression")
    return text


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The time zone of that IANA name (`UTC`, `Europe/Berlin`), refused with a message naming the field."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        message = f"timezone: unknown time zone {name!r} (give an IANA name like Europe/Berlin)"
        raise InvalidArgumentsError(message) from None


@lru_cache(maxsize=1024)
def describe(expression: str) -> str:
    """The expression in words: `*/5 * * * *` is "Every 5 minutes"."""
    return str(get_description(_fields(expression)))


def iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()
