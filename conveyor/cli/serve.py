"""`conveyor serve`: the REST API and the dashboard, with an integrated worker."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from conveyor.cli.common import AppOption, DbOption, handle_errors, load_app
from conveyor.errors import ConfigError
from conveyor.settings import parse_queues


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
    try:  # the web stack (FastAPI, uvicorn) is heavy: only this command loads it
        from conveyor.api.server import serve as run_server
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
