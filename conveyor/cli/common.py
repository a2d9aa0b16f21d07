"""What every command shares: the `--db`, `--app` and `--json` options, loading the app, the output consoles and
formats, and turning errors into a one-line reason and an exit code. Plugins' commands use it too."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from conveyor.app import Conveyor
from conveyor.errors import ConfigError, ConveyorError, JobFailed
from conveyor.settings import parse_duration

F = TypeVar("F", bound=Callable[..., Any])
PIPED_WIDTH = 10_000

# Job data (args, errors, names) is printed as it is: no Rich emoji codes; markup in it is escaped with `escape`.
out = Console(highlight=False, emoji=False)
if not out.is_terminal:  # piped or captured: Rich would assume 80 columns and cut ids and names with "…"
    out = Console(highlight=False, emoji=False, width=PIPED_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (sqlite:///path.db or postgresql://...); default CONVEYOR_DATABASE_URL."),
]
AppOption = Annotated[str | None, typer.Option("--app", help="Your app as module:attribute, to load your tasks.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

STATUS_STYLE = {
    "waiting": "bright_black",
    "running": "yellow",
    "scheduled": "cyan",
    "pending": "blue",
    "processing": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


# ---------------------------------------------------------------------------------------------------- errors
def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Conveyor errors become a one-line reason and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobFailed as exc:
            fail(str(exc), 1)
        except ConveyorError as exc:
            fail(exc.message, 2)

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- the app
def load_app(db: str | None, app_path: str | None) -> Conveyor:
    """The user's app (`--app module:attr`) or a plain one with the demo tasks; `--db` overrides its database."""
    if app_path:
        module_name, _, attr = app_path.partition(":")
        if not module_name or not attr:
            raise ConfigError(f"--app must look like module:attribute, got {app_path!r}")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
        app = getattr(module, attr, None)
        if not isinstance(app, Conveyor):
            raise ConfigError(f"{app_path} is not a Conveyor app (got {type(app).__name__})")
    else:
        app = Conveyor(db)
    if db:
        app.use_database(db)
    return app


# ---------------------------------------------------------------------------------------------------- output
def print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str)) if out.is_terminal else print(json.dumps(value, default=str))


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f}{unit}"
            break
    else:
        text = f"{seconds:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def progress_bar(show: bool) -> Progress:
    """The progress bar of a command that waits for a job, on stderr; hidden unless `show` and a terminal."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
        console=err, disable=not (show and err.is_terminal), transient=True,
    )


def seconds_of(text: str | None) -> float | None:
    return None if text is None else parse_duration(text)
