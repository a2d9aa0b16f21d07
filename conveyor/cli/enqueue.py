"""`conveyor enqueue TYPE`: enqueue one job and print its id."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from conveyor.cli.common import AppOption, DbOption, JsonOption, fail, handle_errors, load_app, print_json, seconds_of


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
    group_key: Annotated[str | None, typer.Option(help="The job's key for fair limits per key (a tenant).")] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option(help="Wait for this job id to complete first; repeat for more.")
    ] = None,
    webhook_url: Annotated[str | None, typer.Option(help="An http(s) URL that gets this job's terminal event.")] = None,
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
        group_key=group_key,
        depends_on=depends_on,
        webhook_url=webhook_url,
    )
    if as_json:
        print_json(job.to_dict())
    else:
        print(job.id)
