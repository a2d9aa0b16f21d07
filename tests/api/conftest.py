"""A real uvicorn server on a free loopback port, in a thread of the test process, and httpx clients for it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
    port = free_port()
    hub = EventHub(conveyor, heartbeat_s=heartbeat_s)
    app = create_app(conveyor, hub=hub)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn to start")
    return RunningServer(conveyor, f"http://127.0.0.1:{port}", server, thread, hub)


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
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c
