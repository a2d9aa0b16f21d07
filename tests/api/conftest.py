"""A real uvicorn server on a free loopback port, in a thread of the test process, and httpx clients for it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import uvicorn

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.api.events import EventHub
from conveyor.settings import Settings
from tests.conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    conveyor: Conveyor
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    hub: EventHub

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(conveyor: Conveyor, *, heartbeat_s: float = 15.0) -> RunningServer:
    hub = EventHub(conveyor, heartbeat_s=heartbeat_s)
    app = create_app(conveyor, hub=hub)
    for _ in range(5):  # a free port may be taken by another process before uvicorn binds it: then another port
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=_serve, args=(server,), daemon=True)
        thread.start()
        wait_for(partial(_up_or_gone, server, thread), timeout=30, what="uvicorn to start")
        if server.started:
            return RunningServer(conveyor, f"http://127.0.0.1:{port}", server, thread, hub)
    raise RuntimeError("uvicorn did not start on any of five free ports")


def _up_or_gone(server: uvicorn.Server, thread: threading.Thread) -> bool:
    return bool(server.started) or not thread.is_alive()


def _serve(server: uvicorn.Server) -> None:
    with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind: start_server tries another port
        asyncio.run(server.serve())


@pytest.fixture
def api_settings() -> Settings:
    return Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1)


@pytest.fixture
def make_server(sqlite_url: str, api_settings: Settings) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(settings: Settings | None = None, heartbeat_s: float = 15.0) -> RunningServer:
        conveyor = Conveyor(sqlite_url, settings=settings or api_settings)
        running = start_server(conveyor, heartbeat_s=heartbeat_s)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
        running.conveyor.close()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server()


@pytest.fixture
def backend_server(db_url: str, api_settings: Settings) -> Iterator[RunningServer]:
    """A server on each backend (SQLite, PostgreSQL): for the tests that depend on the backend's change outbox
    and lease guards."""
    conveyor = Conveyor(db_url, settings=api_settings)
    running = start_server(conveyor)
    yield running
    running.stop()
    conveyor.close()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c
