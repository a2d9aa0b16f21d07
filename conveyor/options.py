"""A job's enqueue options, in one place: the Python API, batches, the REST models, the CLI and workflows all take
`JobOptions`, and `JobOptions.resolve` alone turns them into what is stored: the enqueue options first, then the
task's defaults, then the settings (`CONVEYOR_MAX_RETRIES`). So the same enqueue gives the same job on every path and
every backend."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from conveyor.backends.params import NewJob
from conveyor.errors import InvalidArgumentsError
from conveyor.job import LATEST_RUN_AT_S
from conveyor.jsonsafe import check_json
from conveyor.netguard import static_refusal

if TYPE_CHECKING:
    from conveyor.settings import Settings

MAX_NAME = 200
MAX_TAGS = 100
MAX_INT = 2**31 - 1  # priority fits a 32-bit column on every backend
MAX_RETRIES = 1000
MAX_SECONDS = 10 * 365 * 86400.0  # the longest timeout or delay: ten years
MAX_PARENTS = 10_000
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MAX_URL = 2000

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Tag = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
JobId = Annotated[str, Field(pattern=UUID_PATTERN, description="a job id")]


class TaskDefaults(Protocol):
    """What a task declares for its jobs (`@app.task(queue=..., priority=..., max_retries=..., timeout=...)`)."""

    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_retries(self) -> int | None: ...  # None: the settings' default
    @property
    def timeout(self) -> float | None: ...  # None: unlimited


class JobOptions(BaseModel):
    """The options of `enqueue`, `enqueue_many` and `POST /jobs`: each left out (None) takes the task's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: Name | None = None
    priority: int | None = Field(default=None, ge=-MAX_INT, le=MAX_INT)
    max_retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS, description="seconds one attempt may run")
    delay: float | None = Field(default=None, ge=0, le=MAX_SECONDS, description="seconds from now")
    run_at: AwareDatetime | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    metadata: dict[str, Any] | None = None
    unique_key: Name | None = None
    group_key: Name | None = Field(default=None, description="the job's key for fair limits per key")
    depends_on: list[JobId] | None = Field(
        default=None, max_length=MAX_PARENTS, description="ids of jobs that must complete before this one starts"
    )
    webhook_url: str | None = Field(
        default=None, max_length=MAX_URL, description="an http(s) URL that gets this job's terminal event, signed"
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("queue", "unique_key", "group_key")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return check_name(value)

    @field_validator("delay", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return value.total_seconds() if isinstance(value, timedelta) else value

    @field_validator("priority", "max_retries", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        if isinstance(value, bool) or isinstance(value, float):  # 1.5 is no priority, True no retry count
            raise ValueError("must be an integer")
        return value

    @field_validator("metadata", "tags")
    @classmethod
    def _json(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            check_json(value, str(info.field_name))
        return value

    @model_validator(mode="after")
    def _one_start(self) -> JobOptions:
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give delay or run_at, not both")
        if self.depends_on and self.unique_key is not None:
            raise ValueError("depends_on and unique_key cannot be combined")
        return self

    @classmethod
    def of(cls, **options: Any) -> Self:
        """Options from keyword arguments (the Python API), refused with `InvalidArgumentsError` naming the field."""
        try:
            return cls(**options)
        except ValidationError as exc:
            raise InvalidArgumentsError(options_error(exc), errors=_errors(exc)) from None

    def given(self) -> dict[str, Any]:
        """The options that were given, as keyword arguments of `enqueue`."""
        names = set(JobOptions.model_fields) & self.model_fields_set
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def resolve(self, task: TaskDefaults, settings: Settings, now: float) -> NewJob:
        """The stored options of a job (or of each job of a batch): its id and args are left empty."""
        retries = self.max_retries
        if retries is None:
            retries = task.max_retries if task.max_retries is not None else settings.max_retries
        start = now
        if self.delay is not None:
            start = now + self.delay
        elif self.run_at is not None:
            start = self.run_at.timestamp()
        if not start <= LATEST_RUN_AT_S:
            raise InvalidArgumentsError("the job would start after the year 9999: give a shorter delay or run_at")
        scheduled = start > now
        if self.webhook_url is not None and not settings.webhook_allow_private:
            refused = static_refusal(self.webhook_url)
            if refused:
                raise InvalidArgumentsError(
                    f"webhook_url {refused}: refused (CONVEYOR_WEBHOOK_ALLOW_PRIVATE=true allows it)"
                )
        return NewJob(
            "",
            task.name,
            self.queue if self.queue is not None else task.queue,
            self.priority if self.priority is not None else task.priority,
            {},
            retries,
            self.timeout if self.timeout is not None else task.timeout,
            start if scheduled else now,
            list(self.tags or []),
            self.metadata or {},
            self.unique_key,
            scheduled,
            self.group_key if self.group_key is not None else task_group_key(task),
            tuple(dict.fromkeys(p.lower() for p in self.depends_on or ())),
            webhook_url=self.webhook_url,
        )


def check_name(value: str | None) -> str | None:
    """A queue name, unique key or group key: not blank, no NUL (no database stores one in text)."""
    if value is not None:
        if not value.strip():
            raise ValueError("must not be blank")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    return value


def usable_key(value: object) -> bool:
    """Whether `value` can be a group key: a non-blank string of at most MAX_NAME characters, without NUL."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_NAME and "\x00" not in value


def task_group_key(task: TaskDefaults) -> str | None:
    """The task's `group_key` when it is a fixed string (a function of the args is the caller's to evaluate)."""
    key = getattr(task, "group_key", None)
    return key if isinstance(key, str) else None


def options_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "options"
        message = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        shown = "" if err["type"] in {"missing", "extra_forbidden"} or isinstance(given, dict) else f", got {given!r}"
        parts.append(f"{where}: {message}{shown[:120]}")
    return "; ".join(parts)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [dict(e) for e in exc.errors(include_url=False, include_context=False)]


class EnqueueSpec(JobOptions):
    """One job of a batch (`enqueue_batch`, `POST /jobs`): its type, its args (validated against the task's argument
    schema at enqueue) and its options."""

    type: Name
    args: dict[str, Any] = Field(default_factory=dict)
