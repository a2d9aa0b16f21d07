"""`conveyor jobs list|show|wait|cancel|retry|delete|purge`: inspect and steer jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.cli.common import (
    AppOption,
    DbOption,
    JsonOption,
    ago,
    fail,
    handle_errors,
    load_app,
    out,
    print_json,
    progress_bar,
    seconds_of,
    styled,
)
from conveyor.errors import JobFailed
from conveyor.job import TERMINAL_STATUSES, Job, JobStatus

jobs_cli = typer.Typer(help="Inspect and steer jobs.", no_args_is_help=True)
IdArgument = Annotated[str, typer.Argument(metavar="ID")]


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
def jobs_show(job_id: IdArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
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
    job_id: IdArgument,
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
    with progress_bar(show=not as_json) as progress:
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
    def command(job_id: IdArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
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
