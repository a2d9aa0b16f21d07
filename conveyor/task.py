"""Tasks: registered functions, their defaults, and their arguments validated from type hints."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pydantic

from conveyor.context import JobContext
from conveyor.errors import ConfigError, InvalidArgumentsError
from conveyor.jsonsafe import json_problem
from conveyor.options import MAX_NAME, usable_key
from conveyor.retry import RetryPolicy

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.backends.params import NewJob
    from conveyor.job import Job

_UNSET: Any = object()


def _takes_context(fn: Callable[..., Any], params: list[inspect.Parameter], hints: dict[str, Any]) -> bool:
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        return False
    first = params[0]
    return first.name == "ctx" or hints.get(first.name) is JobContext


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The function's resolved annotations. One that cannot be resolved (a name imported only under TYPE_CHECKING,
    often the context's) counts as Any; the others still validate, instead of all being dropped together."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001, S110 - resolve them one by one below
        pass
    namespace = getattr(fn, "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in getattr(fn, "__annotations__", {}).items():
        try:
            hints[name] = typing.get_type_hints(SimpleNamespace(__annotations__={name: annotation}), namespace)[name]
        except Exception:  # noqa: BLE001, S112 - unresolvable: Any
            continue
    return hints


def build_args_model(name: str, fn: Callable[..., Any]) -> tuple[type[pydantic.BaseModel], bool]:
    """A Pydantic model of the function's parameters (the context excluded), and whether it takes the context."""
    signature = inspect.signature(fn)
    hints = _type_hints(fn)
    params = list(signature.parameters.values())
    takes_ctx = _takes_context(fn, params, hints)
    if takes_ctx:
        params = params[1:]
    fields: dict[str, Any] = {}
    extra = "forbid"
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        annotation = hints.get(p.name, Any)
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (annotation, default)
    # NaN and infinity stay what they are in the dump (pydantic would write null): `validate` refuses them.
    config = pydantic.ConfigDict(
        extra=extra, arbitrary_types_allowed=True, ser_json_inf_nan="constants"  # type: ignore[typeddict-item]
    )
    model = pydantic.create_model(f"{name.replace('.', '_')}_args", __config__=config, **fields)
    return model, takes_ctx


def _format_errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "args"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@dataclass(eq=False)
class Task:
    """A registered task. Calling it runs the function directly; `.enqueue(**args)` makes a job of it.
    `retry_policy` says when a failed attempt runs again (the worker asks it)."""

    app: Conveyor
    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    priority: int = 0
    max_retries: int | None = None
    timeout: float | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    process: bool = False
    # fair limits: a fixed key, or a function of the args evaluated at enqueue (None: no key)
    group_key: str | Callable[[dict[str, Any]], str] | None = None
    args_model: type[pydantic.BaseModel] = field(init=False)
    takes_context: bool = field(init=False)
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.group_key is not None and not callable(self.group_key) and not usable_key(self.group_key):
            raise ConfigError(f"{self.name}: group_key must be a non-blank string of at most {MAX_NAME} characters "
                              f"without NUL, or a function of the args; got {self.group_key!r:.80}")
        self.args_model, self.takes_context = build_args_model(self.name, self.fn)
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.__doc__ = self.fn.__doc__
        self._list_adapter = pydantic.TypeAdapter(
            list[self.args_model],  # type: ignore[name-defined]
            config=pydantic.ConfigDict(ser_json_inf_nan="constants"),
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def enqueue(self, **kwargs: Any) -> Job:
        """Enqueue a job of this task with these arguments (enqueue options go through `app.enqueue`).
        `connection=` (PostgreSQL, unless the task itself has an argument of that name) joins the caller's
        transaction, as in `app.enqueue`."""
        if "connection" in kwargs and "connection" not in self.args_model.model_fields:
            connection = kwargs.pop("connection")
            return self.app.enqueue(self.name, kwargs, connection=connection)
        return self.app.enqueue(self.name, kwargs)

    def keyed(self, job: NewJob) -> NewJob:
        """`job` with its group key, when the enqueue gave none and this task's `group_key` is a function of the
        args; a function that fails or returns no usable key refuses the enqueue, naming the task."""
        if job.group_key is not None or not callable(self.group_key):
            return job
        try:
            key = self.group_key(job.args)
        except Exception as exc:  # noqa: BLE001 - the user's function: any error refuses the enqueue
            raise InvalidArgumentsError(f"{self.name}: group_key failed: {type(exc).__name__}: {exc}") from None
        if not usable_key(key):
            raise InvalidArgumentsError(
                f"{self.name}: group_key must return a non-blank string of at most {MAX_NAME} characters without NUL,"
                f" got {key!r:.80}")
        return job.with_group_key(key)

    def args_schema(self) -> dict[str, Any]:
        return self.args_model.model_json_schema()

    def validate(self, args: Any) -> dict[str, Any]:
        """Validate a payload at enqueue; returns the JSON-ready arguments to store."""
        if not isinstance(args, dict):
            raise InvalidArgumentsError(f"{self.name}: args must be a JSON object, got {type(args).__name__}")
        try:
            model = self.args_model.model_validate(args)
        except pydantic.ValidationError as exc:
            raise InvalidArgumentsError(
                f"{self.name}: invalid arguments: {_format_errors(exc)}",
                errors=[dict(e) for e in exc.errors(include_url=False, include_context=False)],
            ) from None
        dumped: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
        self._check_json(dumped, "args")
        return dumped

    def _check_json(self, value: Any, where: str) -> None:
        """Arguments JSON cannot hold as given (NaN, infinity, a NUL character) are refused, never altered."""
        problem = json_problem(value, where)
        if problem is not None:
            raise InvalidArgumentsError(f"{self.name}: invalid arguments: {problem}")

    def validate_many(self, payloads: list[Any]) -> list[dict[str, Any]]:
        for i, args in enumerate(payloads):
            if not isinstance(args, dict):
                raise InvalidArgumentsError(f"{self.name}: item {i}: args must be a JSON object")
        try:
            models = self._list_adapter.validate_python(payloads)
        except pydantic.ValidationError as exc:
            raise InvalidArgumentsError(
                f"{self.name}: invalid arguments: {_format_errors(exc)}",
                errors=[dict(e) for e in exc.errors(include_url=False, include_context=False)],
            ) from None
        dumped: list[dict[str, Any]] = self._list_adapter.dump_python(models, mode="json", exclude_unset=True)
        self._check_json(dumped, "args")
        return dumped

    def parse(self, args: dict[str, Any]) -> dict[str, Any]:
        """Stored arguments -> the keyword arguments of the call, converted to the annotated types."""
        model = self.args_model.model_validate(args)
        values = {name: getattr(model, name) for name in model.model_fields_set}
        if model.model_extra:
            values.update(model.model_extra)
        return values
