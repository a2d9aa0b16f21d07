"""`conveyor queues list|pause|resume|set`: queue settings."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import (
    STATUS_STYLE,
    AppOption,
    DbOption,
    JsonOption,
    fail,
    handle_errors,
    load_app,
    out,
    print_json,
)
from conveyor.job import QueueInfo

queues_cli = typer.Typer(help="Queue settings: pause, resume, concurrency, rate limit, fair limits per key.",
                         no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument()]


@queues_cli.command("list")
@handle_errors
def queues_list(db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Queues with their settings and job counts."""
    conveyor = load_app(db, app)
    queues = conveyor.list_queues()
    if as_json:
        print_json({"queues": [q.to_dict() for q in queues]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("queue", "paused", "concurrency", "rate/s", *STATUS_STYLE):
        table.add_column(column)
    for q in queues:
        table.add_row(
            escape(q.name), "yes" if q.paused else "no", str(q.concurrency or "-"), str(q.rate_limit or "-"),
            *(str(q.counts.get(s, 0)) for s in STATUS_STYLE),
        )
    out.print(table)


def _print_queue(info: QueueInfo, as_json: bool) -> None:
    if as_json:
        print_json(info.to_dict())
    else:
        state = "paused" if info.paused else "running"
        out.print(f"{escape(info.name)}: {state}, concurrency {info.concurrency or 'unlimited'}, "
                  f"rate limit {info.rate_limit or 'none'}, per key: concurrency "
                  f"{info.group_concurrency or 'unlimited'}, rate limit {info.group_rate_limit or 'none'}")


@queues_cli.command("pause")
@handle_errors
def queues_pause(name: NameArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Stop claiming from a queue (running jobs finish)."""
    _print_queue(load_app(db, app).pause_queue(name), as_json)


@queues_cli.command("resume")
@handle_errors
def queues_resume(name: NameArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Start claiming from a queue again."""
    _print_queue(load_app(db, app).resume_queue(name), as_json)


def _limit(text: str | None, kind: type[int] | type[float], flag: str) -> Any:
    if text is None:
        return ...
    if text.lower() in {"none", "unlimited", "off", ""}:
        return None
    try:
        return kind(text)
    except ValueError:
        fail(f"{flag} must be a number or 'none', got {text!r}", 2)


@queues_cli.command("set")
@handle_errors
def queues_set(
    name: NameArgument,
    db: DbOption = None,
    app: AppOption = None,
    concurrency: Annotated[str | None, typer.Option(help="Most jobs processing at once, or 'none'.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="Jobs started per second, or 'none'.")] = None,
    paused: Annotated[bool | None, typer.Option("--paused/--running", help="Pause or resume.")] = None,
    group_concurrency: Annotated[
        str | None, typer.Option(help="Most jobs of one key processing at once, or 'none'.")] = None,
    group_rate_limit: Annotated[str | None, typer.Option(help="Jobs of one key started per second, or 'none'.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a queue's live settings."""
    changes: dict[str, Any] = {}
    for field, text, kind in (("concurrency", concurrency, int), ("rate_limit", rate_limit, float),
                              ("group_concurrency", group_concurrency, int),
                              ("group_rate_limit", group_rate_limit, float)):
        if (value := _limit(text, kind, "--" + field.replace("_", "-"))) is not ...:
            changes[field] = value
    _print_queue(load_app(db, app).set_queue(name, paused=paused, **changes), as_json)


@queues_cli.command("groups")
@handle_errors
def queues_groups(
    name: NameArgument,
    db: DbOption = None,
    app: AppOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Show at most this many keys.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """A queue's keys (fair limits per key), busiest first: running, ready, and their limits."""
    groups, total = load_app(db, app).list_groups(name, limit=limit)
    if as_json:
        print_json({"queue": name, "groups": [g.to_dict() for g in groups], "total": total})
        return
    table = Table(box=None, header_style="bold")
    for column in ("key", "running", "ready", "concurrency", "rate/s"):
        table.add_column(column)
    for g in groups:
        own = ("*" if g.concurrency_override else "", "*" if g.rate_limit_override else "")
        table.add_row(escape(g.key), str(g.running), str(g.ready), f"{g.concurrency or '-'}{own[0]}",
                      f"{g.rate_limit or '-'}{own[1]}")
    out.print(table)
    out.print(f"{len(groups)} of {total} keys" + (" (* the key's own limit)" if groups else ""))
