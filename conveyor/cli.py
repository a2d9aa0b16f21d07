"""The `conveyor` command line: workers, jobs, queues, stats and checks. Output is for people; `--json` for scripts."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.errors import ConfigError, ConveyorError, JobFailed
from conveyor.job import TERMINAL_STATUSES, Job, JobStatus
from conveyor.plugins.builtin import BUILTIN_PLUGINS
from conveyor.settings import parse_duration, parse_queues

F = TypeVar("F", bound=Callable[..., Any])
PIPED_WIDTH = 10_000

cli = typer.Typer(
    name="conveyor",
    help="Conveyor: durable background jobs on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
jobs_cli = typer.Typer(help="Inspect and steer jobs.", no_args_is_help=True)
queues_cli = typer.Typer(help="Queue settings: pause, resume, concurrency, rate limit.", no_args_is_help=True)
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(queues_cli, name="queues")

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


# ---------------------------------------------------------------------------------------------------- plumbing
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


STATUS_STYLE = {
    "scheduled": "cyan",
    "pending": "blue",
    "processing": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def seconds_of(text: str | None) -> float | None:
    return None if text is None else parse_duration(text)


# ---------------------------------------------------------------------------------------------------- worker
@cli.command()
@handle_errors
def worker(
    db: DbOption = None,
    app: AppOption = None,
    concurrency: Annotated[int | None, typer.Option(help="Slots: jobs run at once by one process.")] = None,
    queues: Annotated[str | None, typer.Option(help="Queues to serve, comma-separated (default: all).")] = None,
    burst: Annotated[bool, typer.Option(help="Exit when no job is pending or processing.")] = False,
    processes: Annotated[
        int, typer.Option(help="Worker processes to supervise (restarted if they die); 0 runs in this process.")
    ] = 1,
    lease: Annotated[float | None, typer.Option(help="Lease seconds (CONVEYOR_LEASE_S).")] = None,
    grace: Annotated[float | None, typer.Option(help="SIGTERM grace seconds (CONVEYOR_SHUTDOWN_GRACE_S).")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run a worker: claims jobs, runs them, writes their outcomes. SIGTERM drains it gracefully."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if processes < 0:
        raise ConfigError("--processes must be 0 or more")
    conveyor = load_app(db, app)
    # Bad options or an unusable database are one clear error here, not worker processes that crash and are
    # restarted forever by the supervisor.
    conveyor.settings.with_changes(concurrency=concurrency, lease_s=lease, shutdown_grace_s=grace)
    conveyor.backend.migrate()
    if processes >= 1:
        from conveyor.worker.supervisor import Supervisor, child_argv

        conveyor.close()

        # The children inherit the environment and import the same app, so they find the same database; the URL
        # (maybe with a password) goes on their command line, visible to every local user, only if it was on ours.
        argv = ["worker", "--processes", "0", "--log-level", log_level]
        for flag, value in (("--db", db), ("--app", app), ("--concurrency", concurrency), ("--queues", queues),
                            ("--lease", lease), ("--grace", grace)):
            if value is not None:
                argv += [flag, str(value)]
        if burst:
            argv.append("--burst")
        grace_s = grace if grace is not None else conveyor.settings.shutdown_grace_s
        raise typer.Exit(Supervisor(child_argv(argv), processes, burst, grace_s).run())
    conveyor.run_worker(
        concurrency=concurrency,
        queues=parse_queues(queues) if queues else None,
        burst=burst,
        lease_s=lease,
        shutdown_grace_s=grace,
        handle_signals=True,
    )
    # A sync task that ignored a time-out may still hold a thread; its job is already settled, so do not wait.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@cli.command()
@handle_errors
def serve(
    db: DbOption = None,
    app: AppOption = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Serve only; run workers separately.")] = False,
    insecure: Annotated[bool, typer.Option(help="Allow a non-loopback address without an API token.")] = False,
    concurrency: Annotated[int | None, typer.Option(help="Slots of the integrated worker.")] = None,
    queues: Annotated[str | None, typer.Option(help="Queues of the integrated worker (default: all).")] = None,
) -> None:
    """Serve the REST API and dashboard, with an integrated worker unless --no-worker."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conveyor = load_app(db, app)
    try:
        from conveyor.api.server import serve as run_server  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigError(f"the HTTP API is not available in this installation: {exc}") from exc
    run_server(
        conveyor,
        host=host,
        port=port,
        worker=not no_worker,
        insecure=insecure,
        concurrency=concurrency,
        queues=parse_queues(queues) if queues else None,
    )


@cli.command()
@handle_errors
def migrate(db: DbOption = None, app: AppOption = None) -> None:
    """Create or upgrade the database schema (also done automatically at start)."""
    conveyor = load_app(db, app)
    conveyor.backend.migrate()
    out.print(f"schema up to date ({conveyor.backend.dialect})")


# ---------------------------------------------------------------------------------------------------- enqueue
@cli.command()
@handle_errors
def enqueue(
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="The task type, e.g. demo.echo.")],
    db: DbOption = None,
    app: AppOption = None,
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object.")] = "{}",
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    delay: Annotated[str | None, typer.Option(help="Start after this long: 30s, 15m, 2h.")] = None,
    queue: Annotated[str | None, typer.Option(help="Queue name.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries after the first attempt.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds one attempt may run.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for more.")] = None,
    unique_key: Annotated[str | None, typer.Option(help="Deduplicate while a job with this key is open.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Enqueue a job and print its id."""
    try:
        payload = json.loads(args)
    except json.JSONDecodeError as exc:
        fail(f"--args is not valid JSON: {exc}", 2)
    if not isinstance(payload, dict):
        fail("--args must be a JSON object, like '{\"name\": \"value\"}'", 2)
    conveyor = load_app(db, app)
    job = conveyor.enqueue(
        task_type,
        payload,
        priority=priority,
        delay=seconds_of(delay),
        queue=queue,
        max_retries=max_retries,
        timeout=timeout,
        tags=tag,
        unique_key=unique_key,
    )
    if as_json:
        print_json(job.to_dict())
    else:
        print(job.id)


# ---------------------------------------------------------------------------------------------------- jobs
@jobs_cli.command("list")
@handle_errors
def jobs_list(
    db: DbOption = None,
    app: AppOption = None,
    status: Annotated[list[str] | None, typer.Option(help="Filter by status; repeat for more.")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Filter by task type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Filter by queue.")] = None,
    tag: Annotated[str | None, typer.Option(help="Filter by tag.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-1000).")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next_cursor of a previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    conveyor = load_app(db, app)
    page = conveyor.list_jobs(status=status, type=task_type, queue=queue, tag=tag, limit=limit, cursor=cursor)
    if as_json:
        print_json({"jobs": [j.to_dict() for j in page.jobs], "next_cursor": page.next_cursor})
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=len(page.jobs[0].id) if page.jobs else 0)
    for column in ("type", "queue", "status", "prio", "progress", "attempts", "created"):
        table.add_column(column)
    for job in page.jobs:
        table.add_row(
            job.id, escape(job.type), escape(job.queue), styled(job.status), str(job.priority), f"{job.progress}%",
            f"{job.attempts}/{job.max_retries + 1}", ago(job.created_at),
        )
    out.print(table if page.jobs else "no jobs")
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@jobs_cli.command("show")
@handle_errors
def jobs_show(
    job_id: Annotated[str, typer.Argument(metavar="ID")], db: DbOption = None, app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one job with its history."""
    conveyor = load_app(db, app)
    job = conveyor.require_job(job_id)
    if as_json:
        print_json(job.to_dict())
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in job.to_dict().items():
        if key in {"args", "result", "metadata", "progress_info", "tags"}:
            value = json.dumps(value, indent=2, default=str)
        table.add_row(key, styled(str(value)) if key == "status" else escape(str(value)))
    out.print(table)
    events = Table(title="history", header_style="bold", box=None)
    for column in ("at", "from", "to", "worker", "message"):
        events.add_column(column)
    for event in conveyor.job_events(job.id):
        events.add_row(
            event.at.isoformat(timespec="milliseconds"), event.from_status or "-", styled(event.to_status),
            escape(event.worker_id or "-"), escape(event.message or ""),
        )
    out.print(events)


@jobs_cli.command("wait")
@handle_errors
def jobs_wait(
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    db: DbOption = None,
    app: AppOption = None,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between checks.")] = 0.5,
    as_json: JsonOption = False,
) -> None:
    """Wait for a job to end, with a progress bar; exit code 1 if it failed or was cancelled."""
    conveyor = load_app(db, app)
    deadline = None if timeout is None else time.monotonic() + timeout
    job = conveyor.require_job(job_id)
    show_bar = not as_json and err.is_terminal
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
        console=err, disable=not show_bar, transient=True,
    ) as progress:
        bar = progress.add_task(f"{job.type} {job.status}", total=100)
        while job.status not in TERMINAL_STATUSES:
            if deadline is not None and time.monotonic() >= deadline:
                fail(f"timed out: job {job_id} is still {job.status} after {timeout}s", 3)
            time.sleep(poll)
            job = conveyor.require_job(job_id)
            progress.update(bar, completed=job.progress, description=f"{job.type} {job.status}")
    if as_json:
        print_json(job.to_dict())
    if job.status is not JobStatus.COMPLETED:
        raise JobFailed(job)
    if not as_json:
        out.print(f"{job.id} {styled(job.status)} result={escape(json.dumps(job.result, default=str))}")


def _job_action(action: Callable[[Conveyor, str], Job | None], verb: str) -> Callable[..., None]:
    @handle_errors
    def command(
        job_id: Annotated[str, typer.Argument(metavar="ID")], db: DbOption = None, app: AppOption = None,
        as_json: JsonOption = False,
    ) -> None:
        conveyor = load_app(db, app)
        job = action(conveyor, job_id)
        if as_json:
            print_json(job.to_dict() if job else {"id": job_id, "deleted": True})
        elif job is None:
            out.print(f"{escape(job_id)} {verb}")
        else:
            extra = " (cancellation requested; the worker stops it)" if job.status is JobStatus.PROCESSING else ""
            out.print(f"{job.id} {styled(job.status)}{extra}")

    return command


jobs_cli.command("cancel", help="Cancel a waiting job, or request cancellation of a running one.")(
    _job_action(lambda c, i: c.cancel(i), "cancelled")
)
jobs_cli.command("retry", help="Retry a failed or cancelled job.")(_job_action(lambda c, i: c.retry(i), "retried"))
jobs_cli.command("delete", help="Delete a job that is not processing.")(
    _job_action(lambda c, i: c.delete(i), "deleted")
)


@jobs_cli.command("purge")
@handle_errors
def jobs_purge(
    db: DbOption = None,
    app: AppOption = None,
    older_than: Annotated[
        str | None, typer.Option(help="Finished longer ago than this: 30s, 15m, 2h, 7d (0d: all finished).")
    ] = None,
    status: Annotated[list[str] | None, typer.Option(help="Only these finished statuses; repeatable.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished jobs (default: older than CONVEYOR_RETENTION_DAYS) and say how many."""
    conveyor = load_app(db, app)
    deleted = conveyor.purge(seconds_of(older_than), status)
    if as_json:
        print_json({"deleted": deleted})
    else:
        out.print(f"deleted {deleted} finished job{'s' if deleted != 1 else ''}")


# ---------------------------------------------------------------------------------------------------- queues
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


def _print_queue(info: Any, as_json: bool) -> None:
    if as_json:
        print_json(info.to_dict())
    else:
        state = "paused" if info.paused else "running"
        out.print(f"{escape(info.name)}: {state}, concurrency {info.concurrency or 'unlimited'}, "
                  f"rate limit {info.rate_limit or 'none'}")


@queues_cli.command("pause")
@handle_errors
def queues_pause(
    name: Annotated[str, typer.Argument()], db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
    """Stop claiming from a queue (running jobs finish)."""
    _print_queue(load_app(db, app).pause_queue(name), as_json)


@queues_cli.command("resume")
@handle_errors
def queues_resume(
    name: Annotated[str, typer.Argument()], db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
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
    name: Annotated[str, typer.Argument()],
    db: DbOption = None,
    app: AppOption = None,
    concurrency: Annotated[str | None, typer.Option(help="Most jobs processing at once, or 'none'.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="Jobs started per second, or 'none'.")] = None,
    paused: Annotated[bool | None, typer.Option("--paused/--running", help="Pause or resume.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a queue's live settings."""
    changes: dict[str, Any] = {}
    if (value := _limit(concurrency, int, "--concurrency")) is not ...:
        changes["concurrency"] = value
    if (value := _limit(rate_limit, float, "--rate-limit")) is not ...:
        changes["rate_limit"] = value
    _print_queue(load_app(db, app).set_queue(name, paused=paused, **changes), as_json)


# ---------------------------------------------------------------------------------------------------- stats, check
@cli.command()
@handle_errors
def stats(db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Counts by status and type, durations, throughput and live workers."""
    conveyor = load_app(db, app)
    summary = conveyor.stats()
    if as_json:
        print_json(summary.to_dict())
        return
    counts = Table(title="jobs", box=None, header_style="bold")
    counts.add_column("type")
    for status in STATUS_STYLE:
        counts.add_column(status)
    counts.add_column("p50 s")
    counts.add_column("p95 s")
    for task_type, by_status in sorted(summary.counts_by_type.items()):
        durations = summary.durations.get(task_type, {})
        counts.add_row(
            escape(task_type), *(str(by_status.get(s, 0)) for s in STATUS_STYLE),
            f"{durations['p50']:.3f}" if durations else "-", f"{durations['p95']:.3f}" if durations else "-",
        )
    counts.add_row("[bold]all[/]", *(f"[bold]{summary.counts.get(s, 0)}[/]" for s in STATUS_STYLE), "", "")
    out.print(counts)
    recent = summary.throughput[-5:]
    per_minute = ", ".join(str(m["completed"]) for m in recent)
    out.print(f"completed per minute (last {len(recent)}): {per_minute}")
    out.print(f"live workers: {summary.workers}")


@cli.command()
@handle_errors
def check(db: DbOption = None, app: AppOption = None, timeout: float = 30.0) -> None:
    """Check the database, its schema, and run an enqueue-run-complete round trip (no worker needed)."""
    conveyor = load_app(db, app)
    started = time.monotonic()
    backend = conveyor.backend
    out.print(f"[green]ok[/] database reachable ({backend.dialect}: {escape(_redact(conveyor.database_url))})")
    backend.migrate()
    out.print("[green]ok[/] schema up to date")
    queue = f"conveyor-check-{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    if "demo.echo" not in conveyor.tasks:  # an --app made with demo_tasks=False: the round trip brings its own
        conveyor = Conveyor(conveyor.database_url, settings=conveyor.settings)
    job = conveyor.enqueue("demo.echo", {"token": token}, queue=queue, max_retries=0)
    conveyor.run_worker(concurrency=1, queues=[queue], burst=True, handle_signals=False)
    done = conveyor.wait(job.id, poll_interval=0.05, timeout=timeout)
    if done.result != {"token": token}:
        fail(f"round trip returned {done.result!r}, expected the job's own arguments")
    conveyor.delete(job.id)
    out.print(f"[green]ok[/] round trip: enqueued, ran and completed a demo job in {time.monotonic() - started:.2f}s")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


@functools.cache
def add_plugin_commands() -> None:
    """The built-in plugins' commands (`ingest`, `search`); `main` adds them before it runs."""
    for plugin in BUILTIN_PLUGINS:
        if plugin.cli is not None:
            plugin.cli(cli)


def main() -> None:
    add_plugin_commands()
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["add_plugin_commands", "cli", "main"]
