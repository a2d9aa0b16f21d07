"""`conveyor schedules list|add|pause|resume|trigger|delete`: cron schedules (SPEC section 7)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import AppOption, DbOption, JsonOption, fail, handle_errors, load_app, out, print_json
from conveyor.job import iso, to_datetime
from conveyor.schedules import Schedule

schedules_app = typer.Typer(help="Cron schedules: add, pause, resume, trigger, delete.", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(help="The schedule's name.")]


@schedules_app.command("list")
@handle_errors
def schedules_list(db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Every schedule, with its cron in words and its next and last runs."""
    schedules = load_app(db, app).schedules.all()
    if as_json:
        print_json({"schedules": [s.to_dict() for s in schedules]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "task", "cron", "in words", "timezone", "state", "next run", "last run", "last job"):
        table.add_column(column)
    for s in schedules:
        table.add_row(
            escape(s.name), escape(s.task), escape(s.cron), escape(s.description), escape(s.timezone),
            "paused" if s.paused else "active", "-" if s.paused else _when(s.next_run_at), _when(s.last_run_at),
            s.last_job_id or "-",
        )
    out.print(table)


def _when(at: float | None) -> str:
    return iso(to_datetime(at)) or "-"


def _print(schedule: Schedule, as_json: bool, what: str) -> None:
    if as_json:
        print_json(schedule.to_dict())
        return
    state = "paused" if schedule.paused else f"next run {_when(schedule.next_run_at)}"
    out.print(f"{what} {escape(schedule.name)}: {escape(schedule.cron)} ({escape(schedule.description)}, "
              f"{escape(schedule.timezone)}), {state}")


@schedules_app.command("add")
@handle_errors
def schedules_add(
    name: NameArgument,
    task: Annotated[str, typer.Argument(help="The task its jobs run.")],
    cron: Annotated[str, typer.Argument(help="5 fields, 6 with leading seconds, or @hourly, @daily, ...")],
    db: DbOption = None,
    app: AppOption = None,
    args: Annotated[str, typer.Option(help="The jobs' arguments, a JSON object.")] = "{}",
    timezone: Annotated[str, typer.Option(help="An IANA time zone.")] = "UTC",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the task's).")] = None,
    priority: Annotated[int | None, typer.Option(help="Priority (default: the task's).")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries (default: the task's).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per attempt (default: the task's).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag of its jobs; repeat for several.")] = None,
    catch_up: Annotated[bool, typer.Option(help="Replay ticks missed while nothing ran (at most 100).")] = False,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a schedule."""
    try:
        payload = json.loads(args)
    except json.JSONDecodeError as exc:
        fail(f"--args is not JSON: {exc}", 2)
    fields: dict[str, Any] = {"name": name, "task": task, "cron": cron, "args": payload, "timezone": timezone,
                              "catch_up": catch_up, "paused": paused, "tags": tag or None}
    options = {"queue": queue, "priority": priority, "max_retries": max_retries, "timeout": timeout}
    fields.update({k: v for k, v in options.items() if v is not None})
    _print(load_app(db, app).schedules.create(**fields), as_json, "added")


@schedules_app.command("pause")
@handle_errors
def schedules_pause(
    name: NameArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
    """Stop a schedule firing (until resumed)."""
    _print(load_app(db, app).schedules.pause(name), as_json, "paused")


@schedules_app.command("resume")
@handle_errors
def schedules_resume(
    name: NameArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
    """Let a paused schedule fire again, from its next tick."""
    _print(load_app(db, app).schedules.resume(name), as_json, "resumed")


@schedules_app.command("trigger")
@handle_errors
def schedules_trigger(
    name: NameArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
    """Enqueue one job of a schedule now; prints the job id."""
    job = load_app(db, app).schedules.trigger(name)
    if as_json:
        print_json(job.to_dict())
    else:
        out.print(job.id)


@schedules_app.command("delete")
@handle_errors
def schedules_delete(name: NameArgument, db: DbOption = None, app: AppOption = None) -> None:
    """Delete a schedule (the jobs it made stay)."""
    load_app(db, app).schedules.delete(name)
    out.print(f"deleted {escape(name)}")
