"""`conveyor serve`: uvicorn serving the API (and dashboard), with an integrated worker in the same process.

The worker runs in its own thread and event loop, so job code and its database polling never stall HTTP requests.
SIGTERM or SIGINT stops both: the server ends its event streams and open requests, the worker stops claiming, lets
running jobs finish within the shutdown grace, and hands the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING

import uvicorn

from conveyor.api.app import create_app
from conveyor.api.events import EventHub
from conveyor.errors import ConfigError
from conveyor.schedules.service import SchedulerThread
from conveyor.worker import Worker

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.serve")

GRACEFUL_HTTP_SHUTDOWN_S = 10.0


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(str(info[4][0])).is_loopback for info in infos)


def bind_socket(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here (uvicorn serves it) so that a port in use is refused with one line
    before the worker, the database or uvicorn's start-up messages."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason} (choose another with --port)") from None
    sock.set_inheritable(True)
    return sock


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    if not is_loopback(host) and not token and not insecure:
        raise ConfigError(
            f"refusing to serve on {host} without an API token: set CONVEYOR_API_TOKEN, "
            "or pass --insecure to expose the API unauthenticated"
        )


class WorkerThread:
    """The integrated worker, in a thread with its own event loop."""

    def __init__(self, worker: Worker, on_failure: Callable[[], None] | None = None) -> None:
        self.worker = worker
        self.on_failure = on_failure
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="conveyor-worker", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.started.set()
            await self.worker.run(handle_signals=False)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the server, which then stops
            self.error = exc
            log.error("integrated worker stopped: %r; stopping the server", exc)
            if self.on_failure is not None:
                self.on_failure()
        finally:
            self.started.set()

    def start(self) -> None:
        self.thread.start()
        self.started.wait()

    def stop(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.worker.stop)

    def join(self, timeout: float | None) -> None:
        self.thread.join(timeout)


class _Server(uvicorn.Server):
    """uvicorn, with the event streams and the worker stopped as soon as a signal arrives, and without uvicorn
    re-raising the signal after a graceful exit (we exit normally once the worker is drained)."""

    def __init__(self, config: uvicorn.Config, hub: EventHub, worker: WorkerThread | None) -> None:
        super().__init__(config)
        self.hub = hub
        self.worker = worker
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: object) -> None:
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.close_soon)
        if self.worker is not None:
            self.worker.stop()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)


def serve(
    conveyor: Conveyor,
    host: str = "127.0.0.1",
    port: int = 8000,
    worker: bool = True,
    insecure: bool = False,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve until SIGTERM/SIGINT. Refuses a non-loopback `host` without an API token unless `insecure`."""
    check_bind(host, conveyor.settings.api_token, insecure)
    listening = bind_socket(host, port)  # a busy port is one clear error, before anything starts
    conveyor.backend.migrate()
    hub = EventHub(conveyor)
    app = create_app(conveyor, hub=hub)
    worker_thread: WorkerThread | None = None
    if worker:
        worker_thread = WorkerThread(
            Worker(conveyor, concurrency=concurrency, queues=tuple(queues) if queues else None)
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(GRACEFUL_HTTP_SHUTDOWN_S),
        proxy_headers=False,
    )
    server = _Server(config, hub, worker_thread)
    if worker_thread is not None:
        worker_thread.on_failure = lambda: setattr(server, "should_exit", True)
    if worker_thread is not None:
        worker_thread.start()
    scheduler = SchedulerThread(conveyor) if worker_thread is None else None  # a worker runs one of its own
    if scheduler is not None:
        scheduler.start()
    log.info(
        "Conveyor on http://%s:%d (API /api/v1, docs /docs)%s", host, port,
        " with an integrated worker" if worker_thread else "",
    )
    try:
        asyncio.run(server.serve(sockets=[listening]))
    finally:
        listening.close()
        if scheduler is not None:
            scheduler.stop()
        if worker_thread is not None:
            worker_thread.stop()
            worker_thread.join(conveyor.settings.shutdown_grace_s + 15.0)
    if worker_thread is not None and worker_thread.error is not None:
        raise ConfigError(f"the integrated worker failed: {worker_thread.error}")
    if not server.started:
        raise ConfigError(f"could not start the server on {host}:{port}")
