"""A schedule as stored (`Schedule`), and the fields that create or change one (`ScheduleSpec`, `ScheduleChange`):
validated at the edge, with errors naming the field, so a bad schedule is refused before anything is stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conveyor.errors import InvalidArgumentsError
from conveyor.job import iso, to_datetime
from conveyor.options import MAX_INT, MAX_RETRIES, MAX_SECONDS, MAX_TAGS, Name, Tag, check_name, options_error
from conveyor.schedules.cron import Cron, describe, zone


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule. Times are UTC epoch seconds; job options left None take the task's defaults."""

    name: str
    task: str
    cron: str
    timezone: str
    args: dict[str, Any]
    queue: str | None
    priority: int | None
    max_retries: int | None
    timeout: float | None
    tags: list[str]
    paused: bool
    catch_up: bool
    next_run_at: float | None
    last_run_at: float | None
    last_job_id: str | None
    created_at: float
    updated_at: float

    @property
    def when(self) -> Cron:
        return Cron(self.cron, self.timezone)

    @property
    def description(self) -> str:
        return describe(self.cron)

    def job_options(self) -> dict[str, Any]:
        """The options of this schedule's jobs, as keyword arguments of `enqueue` (None ones left out)."""
        given = {"queue": self.queue, "priority": self.priority, "max_retries": self.max_retries,
                 "timeout": self.timeout, "tags": self.tags or None}
        return {k: v for k, v in given.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """The schedule as the REST API answers it: its cron in words and its times in ISO 8601."""
        return {
            "name": self.name,
            "task": self.task,
            "cron": self.cron,
            "description": self.description,
            "timezone": self.timezone,
            "args": self.args,
            "queue": self.queue,
            "priority": self.priority,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "tags": self.tags,
            "paused": self.paused,
            "catch_up": self.catch_up,
            "next_run_at": None if self.paused else iso(to_datetime(self.next_run_at)),
            "last_run_at": iso(to_datetime(self.last_run_at)),
            "last_job_id": self.last_job_id,
            "created_at": iso(to_datetime(self.created_at)),
            "updated_at": iso(to_datetime(self.updated_at)),
        }


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("cron", check_fields=False)
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            _check(Cron, value)
        return value

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            _check(zone, value)
        return value

    @field_validator("name", "task", "queue", check_fields=False)
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return check_name(value)

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        for tag in value or []:
            check_name(tag)
        return value

    @field_validator("priority", "max_retries", mode="before", check_fields=False)
    @classmethod
    def _integer(cls, value: Any) -> Any:
        if isinstance(value, bool | float):  # 1.5 is no priority, True no retry count
            raise ValueError("must be an integer")
        return value

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> Any:
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InvalidArgumentsError(options_error(exc)) from None


class ScheduleChange(_Fields):
    """The fields of `PATCH /schedules/{name}`: each left out stays as it is."""

    task: Name | None = None
    cron: str | None = Field(default=None, max_length=200, description="5 fields, 6 with leading seconds, or @daily")
    timezone: str | None = Field(default=None, max_length=200, description="an IANA time zone, default UTC")
    args: dict[str, Any] | None = None
    queue: Name | None = None
    priority: int | None = Field(default=None, ge=-MAX_INT, le=MAX_INT)
    max_retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    paused: bool | None = None
    catch_up: bool | None = None


class ScheduleSpec(ScheduleChange):
    """The fields of a new schedule (`POST /schedules`, `app.schedules.create`, `@app.periodic`)."""

    name: Name
    task: Name
    cron: str = Field(max_length=200, description="5 fields, 6 with leading seconds, or @daily")
    timezone: str = Field(default="UTC", max_length=200)


def _check(parse: Callable[[str], object], value: str) -> None:
    """A field's check as pydantic wants it (a ValueError: its message, after the field name pydantic adds)."""
    try:
        parse(value)
    except InvalidArgumentsError as exc:
        raise ValueError(exc.message.split(": ", 1)[-1]) from None
