"""`conveyor webhooks list|add|pause|resume|delete|deliveries|test|job-secret`: webhook subscriptions (SPEC
section 7), and the secret of jobs' own webhook_url."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import AppOption, DbOption, JsonOption, handle_errors, load_app, out, print_json
from conveyor.webhooks import EVENTS, Webhook
from conveyor.webhooks import subscriptions as subs
from conveyor.webhooks.subscriptions import WebhookPatch, WebhookSpec

webhooks_cli = typer.Typer(help="Webhook subscriptions: signed, retried deliveries of job events.",
                           no_args_is_help=True)
IdArgument = Annotated[str, typer.Argument(help="The subscription's id.")]


def _print(webhook: Webhook, as_json: bool, *, secret: bool = False) -> None:
    if as_json:
        print_json(webhook.to_dict(secret=secret))
        return
    state = f"paused ({webhook.paused_reason})" if webhook.paused else "active"
    out.print(f"{webhook.id}: {escape(webhook.url)}, {', '.join(webhook.events)}, {escape(state)}")
    if secret:
        typer.echo(f"secret (shown once): {webhook.secret}")


@webhooks_cli.command("list")
@handle_errors
def webhooks_list(db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Subscriptions, with their state."""
    found = subs.store(load_app(db, app)).list_webhooks()
    if as_json:
        print_json({"webhooks": [w.to_dict() for w in found]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "url", "events", "filter", "state"):
        table.add_column(column)
    for w in found:
        flt = ", ".join(f"{k}={v}" for k, v in (("type", w.filter_type), ("queue", w.filter_queue),
                                                 ("tag", w.filter_tag)) if v) or "-"
        state = f"paused: {w.paused_reason}" if w.paused else "active"
        table.add_row(w.id, escape(w.url), ", ".join(w.events), escape(flt), escape(state))
    out.print(table)


@webhooks_cli.command("add")
@handle_errors
def webhooks_add(
    url: Annotated[str, typer.Argument(help="Where to POST the events (http or https).")],
    event: Annotated[list[str], typer.Option("--event", "-e", help=f"An event; repeat for more: {', '.join(EVENTS)}.")],
    type: Annotated[str | None, typer.Option("--type", help="Only jobs of this task type.")] = None,  # noqa: A002
    queue: Annotated[str | None, typer.Option(help="Only jobs of this queue.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only jobs with this tag.")] = None,
    secret: Annotated[str | None, typer.Option(help="whsec_... (generated when not given).")] = None,
    db: DbOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Subscribe a URL to job events; prints the signing secret once."""
    spec = subs.parse(WebhookSpec, {"url": url, "events": event, "secret": secret,
                                    "filter": {"type": type, "queue": queue, "tag": tag}})
    _print(subs.create(load_app(db, app), spec), as_json, secret=True)


@webhooks_cli.command("pause")
@handle_errors
def webhooks_pause(webhook_id: IdArgument, db: DbOption = None, app: AppOption = None,
                   as_json: JsonOption = False) -> None:
    """Stop sending to a subscription (its deliveries wait)."""
    _print(subs.change(load_app(db, app), webhook_id, WebhookPatch(paused=True)), as_json)


@webhooks_cli.command("resume")
@handle_errors
def webhooks_resume(webhook_id: IdArgument, db: DbOption = None, app: AppOption = None,
                    as_json: JsonOption = False) -> None:
    """Send to a subscription again (also one paused after 24 hours of failures)."""
    _print(subs.change(load_app(db, app), webhook_id, WebhookPatch(paused=False)), as_json)


@webhooks_cli.command("delete")
@handle_errors
def webhooks_delete(webhook_id: IdArgument, db: DbOption = None, app: AppOption = None) -> None:
    """Delete a subscription and its deliveries."""
    subs.store(load_app(db, app)).delete_webhook(webhook_id)
    out.print(f"deleted {webhook_id}")


@webhooks_cli.command("deliveries")
@handle_errors
def webhooks_deliveries(
    webhook_id: IdArgument,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    db: DbOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """A subscription's recent deliveries: event, job, attempts, last status code or error."""
    found = subs.store(load_app(db, app)).webhook_deliveries(webhook_id, limit)
    if as_json:
        print_json({"deliveries": [d.to_dict() for d in found]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("at", "event", "job", "attempt", "status", "code", "error"):
        table.add_column(column)
    for d in found:
        row = d.to_dict()
        table.add_row(row["at"], d.event, d.job_id or "-", str(d.attempt), d.status, str(d.status_code or "-"),
                      escape(d.error or ""))
    out.print(table)


@webhooks_cli.command("job-secret")
@handle_errors
def webhooks_job_secret(db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """The secret that signs deliveries to jobs' own --webhook-url (CONVEYOR_WEBHOOK_SECRET, else the database's)."""
    secret, source = subs.job_secret(load_app(db, app))
    if as_json:
        print_json({"secret": secret, "source": source})
    else:
        typer.echo(secret)


@webhooks_cli.command("test")
@handle_errors
def webhooks_test(webhook_id: IdArgument, db: DbOption = None, app: AppOption = None,
                  as_json: JsonOption = False) -> None:
    """Send a signed webhook.test event now and print the outcome."""
    result = asyncio.run(subs.send_test(load_app(db, app), webhook_id))
    if as_json:
        print_json(result)
    else:
        out.print("delivered" if result["ok"] else f"failed: {escape(str(result['error']))}")
