"""The `conveyor` command line: workers, jobs, queues, stats and checks. Output is for people; `--json` for scripts.

`common` holds what every command shares (the `--db`, `--app` and `--json` options, loading the app, output and
errors); each other module is one command or one group of them. The built-in plugins add theirs (`ingest`,
`search`) when the command line runs (`main`), so that importing a plugin's commands, which use `common`, never
finds this package half-made.
"""

from __future__ import annotations

import functools

import typer

from conveyor.cli import check, enqueue, migrate, serve, stats, worker
from conveyor.cli.jobs import jobs_cli
from conveyor.cli.queues import queues_cli
from conveyor.cli.webhooks import webhooks_cli
from conveyor.cli.workflows import workflows_cli
from conveyor.plugins.builtin import BUILTIN_PLUGINS

cli = typer.Typer(
    name="conveyor",
    help="Conveyor: durable background jobs on SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.command()(worker.worker)
cli.command()(serve.serve)
cli.command()(migrate.migrate)
cli.command()(enqueue.enqueue)
cli.command()(stats.stats)
cli.command()(check.check)
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(queues_cli, name="queues")
cli.add_typer(workflows_cli, name="workflows")
cli.add_typer(webhooks_cli, name="webhooks")


@functools.cache
def add_plugin_commands() -> None:
    """The built-in plugins' commands (`ingest`, `search`); `main` adds them before it runs."""
    for plugin in BUILTIN_PLUGINS:
        if plugin.cli is not None:
            plugin.cli(cli)


def main() -> None:
    add_plugin_commands()
    cli()


__all__ = ["add_plugin_commands", "cli", "main"]
