"""`conveyor check`: the database, its schema, and an enqueue-run-complete round trip."""

from __future__ import annotations

import time
import uuid

from rich.markup import escape

from conveyor.app import Conveyor
from conveyor.cli.common import AppOption, DbOption, fail, handle_errors, load_app, out


@handle_errors
def check(db: DbOption = None, app: AppOption = None, timeout: float = 30.0) -> None:
    """Check the database, its schema, and run an enqueue-run-complete round trip (no worker needed)."""
    conveyor = load_app(db, app)
    started = time.monotonic()
    backend = conveyor.backend
    out.print(f"[green]ok[/] database reachable ({backend.dialect}: {escape(redact(conveyor.database_url))})")
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
    for plugin in conveyor.plugins:
        if plugin.check is not None:
            plugin.check(conveyor, out.print)


def redact(url: str) -> str:
    """The URL with its password masked."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
