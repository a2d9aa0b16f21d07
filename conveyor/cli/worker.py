"""`conveyor worker`: run a worker in this process, or supervise several worker processes."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from conveyor.cli.common import AppOption, DbOption, handle_errors, load_app
from conveyor.errors import ConfigError
from conveyor.settings import parse_queues
from conveyor.worker.supervisor import Supervisor, child_argv


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
