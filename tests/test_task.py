"""Task registration and argument validation from type hints."""

from __future__ import annotations

import enum
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import pydantic
import pytest

from conveyor import ConfigError, Conveyor, InvalidArgumentsError, JobContext, Task
from conveyor.retry import RetryPolicy

if TYPE_CHECKING:
    from decimal import Decimal  # only for type checkers: unresolvable at run time


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(pydantic.BaseModel):
    x: int
    y: int


@pytest.fixture
def app() -> Conveyor:
    return Conveyor("sqlite:///:memory:", demo_tasks=False)  # never opened: nothing here touches the database


def test_bare_and_configured_registration(app: Conveyor) -> None:
    @app.task
    def plain(ctx: JobContext) -> None: ...

    @app.task(name="custom.name", queue="q", priority=4, max_retries=1, timeout=9, retry_backoff=2,
              retry_backoff_max=7)
    async def configured(ctx: JobContext) -> None: ...

    assert isinstance(plain, Task) and app.tasks["plain"] is plain
    assert app.get_task("custom.name") is configured
    assert (configured.queue, configured.priority, configured.max_retries, configured.timeout) == ("q", 4, 1, 9)
    assert configured.retry_policy == RetryPolicy(2, 7)
    assert (plain.queue, plain.priority, plain.max_retries, plain.timeout) == ("default", 0, None, None)
    assert configured.is_async and not plain.is_async


def test_demo_tasks_are_registered_by_default() -> None:
    assert {"demo.echo", "demo.sleep", "demo.fail"} <= set(Conveyor("sqlite:///:memory:").tasks)
    assert Conveyor("sqlite:///:memory:", demo_tasks=False).tasks == {}


def test_a_task_is_still_callable(app: Conveyor) -> None:
    @app.task
    def double(ctx: object, n: int) -> int:
        """Doubles."""
        return 2 * n

    assert double(None, 21) == 42
    assert double.__doc__ == "Doubles."


@pytest.mark.parametrize("options", [{"max_retries": -1}, {"timeout": 0}, {"timeout": -5}])
def test_bad_task_options_are_refused(app: Conveyor, options: dict[str, Any]) -> None:
    def fn(ctx: object) -> None: ...

    with pytest.raises(ConfigError):
        app.task(**options)(fn)


def test_context_is_detected_by_name_or_annotation(app: Conveyor) -> None:
    @app.task
    def by_name(ctx, n: int) -> None: ...  # type: ignore[no-untyped-def]

    @app.task
    def by_type(context: JobContext, n: int) -> None: ...

    @app.task
    def without(n: int) -> None: ...

    assert by_name.takes_context and by_type.takes_context and not without.takes_context
    for task in (by_name, by_type, without):
        assert task.validate({"n": 1}) == {"n": 1}
        assert set(task.args_schema()["properties"]) == {"n"}


def test_validation_follows_the_hints(app: Conveyor) -> None:
    @app.task
    def rich(
        ctx: JobContext,
        day: date,
        colour: Colour,
        point: Point,
        mode: Literal["fast", "slow"] = "fast",
        names: list[str] | None = None,
    ) -> None: ...

    stored = rich.validate({"day": "2026-03-04", "colour": "red", "point": {"x": 1, "y": "2"}})
    assert stored == {"day": "2026-03-04", "colour": "red", "point": {"x": 1, "y": 2}}  # JSON-ready, defaults unset
    assert rich.parse(stored) == {"day": date(2026, 3, 4), "colour": Colour.RED, "point": Point(x=1, y=2)}
    for bad in (
        {"day": "yesterday", "colour": "red", "point": {"x": 1, "y": 2}},
        {"day": "2026-03-04", "colour": "green", "point": {"x": 1, "y": 2}},
        {"day": "2026-03-04", "colour": "red", "point": {"x": 1}},
        {"day": "2026-03-04", "colour": "red", "point": {"x": 1, "y": 2}, "mode": "medium"},
        {"day": "2026-03-04", "colour": "red", "point": {"x": 1, "y": 2}, "names": "not a list"},
        {"colour": "red", "point": {"x": 1, "y": 2}},
        {"day": "2026-03-04", "colour": "red", "point": {"x": 1, "y": 2}, "extra": 1},
    ):
        with pytest.raises(InvalidArgumentsError, match="rich: invalid arguments"):
            rich.validate(bad)


def test_var_keyword_accepts_extra_arguments(app: Conveyor) -> None:
    @app.task
    def loose(ctx: JobContext, n: int, **rest: Any) -> None: ...

    assert loose.validate({"n": "1", "anything": [1]}) == {"n": 1, "anything": [1]}
    assert loose.parse({"n": 1, "anything": [1]}) == {"n": 1, "anything": [1]}
    with pytest.raises(InvalidArgumentsError):
        loose.validate({"anything": 1})


def test_validate_many_names_the_bad_item(app: Conveyor) -> None:
    @app.task
    def item(ctx: JobContext, n: int) -> None: ...

    assert item.validate_many([{"n": 1}, {"n": "2"}]) == [{"n": 1}, {"n": 2}]
    with pytest.raises(InvalidArgumentsError, match=r"2\.n") as info:
        item.validate_many([{"n": 1}, {"n": 2}, {"n": "three"}])
    assert info.value.errors[0]["loc"] == (2, "n")
    with pytest.raises(InvalidArgumentsError, match="item 1"):
        item.validate_many([{"n": 1}, [2]])


def test_an_unresolvable_hint_does_not_switch_off_validation(app: Conveyor) -> None:
    """`Decimal` is imported only under TYPE_CHECKING here, as users often import `JobContext`: that one hint
    becomes Any, and every other parameter is still validated."""

    @app.task
    def partly(ctx: JobContext, amount: Decimal, n: int) -> None: ...

    assert partly.takes_context
    assert partly.validate({"amount": "1.5", "n": "2"}) == {"amount": "1.5", "n": 2}
    with pytest.raises(InvalidArgumentsError, match="n"):
        partly.validate({"amount": 1, "n": "many"})
    with pytest.raises(InvalidArgumentsError, match="amount"):
        partly.validate({"n": 1})


def test_task_enqueue_goes_through_the_app(sqlite_url: str) -> None:
    with Conveyor(sqlite_url, demo_tasks=False) as app:

        @app.task(priority=3)
        def greet(ctx: JobContext, name: str) -> str:
            return f"hi {name}"

        job = greet.enqueue(name="ada")
        assert (job.type, job.args, job.priority) == ("greet", {"name": "ada"}, 3)
        with pytest.raises(InvalidArgumentsError):
            greet.enqueue(nom="ada")
        assert len(app.list_jobs().jobs) == 1
