"""Fixtures of the dashboard's browser tests: the real server (uvicorn on a free port), a real worker process, and
headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
HAS_API = importlib.util.find_spec("conveyor.api") is not None
ARTIFACTS = Path(os.environ.get("CONVEYOR_ARTIFACTS", "/tmp/conveyor-artifacts"))


def build_app(conveyor: Conveyor) -> FastAPI:
    """The real app of `conveyor serve` when the REST API is present; else the dashboard on its own."""
    if HAS_API:
        from conveyor.api import create_app

        app: FastAPI = create_app(conveyor)
        if not any(getattr(r, "path", None) == "/ui/jobs" for r in app.routes):
            from conveyor.dashboard import create_dashboard

            app.include_router(create_dashboard(conveyor))
        return app
    from conveyor.dashboard import create_dashboard

    app = FastAPI()
    app.include_router(create_dashboard(conveyor))
    return app


@dataclass
class Server:
    url: str
    conveyor: Conveyor
    db_url: str
    token: str | None

    def enqueue(self, task_type: str, args: dict[str, Any] | None = None, **options: Any) -> str:
        """Enqueue through the REST API when it exists (the path a client takes), else through the facade."""
        if HAS_API:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            body = {"type": task_type, "args": args or {}, **options}
            response = httpx.post(f"{self.url}/api/v1/jobs", json=body, headers=headers, timeout=30)
            assert response.status_code in (200, 201), response.text
            return str(response.json()["id"])
        return self.conveyor.enqueue(task_type, args or {}, **options).id

    def status(self, job_id: str) -> str | None:
        job = self.conveyor.get_job(job_id)
        return None if job is None else job.status.value


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", ws="none", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn to start")
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    running: list[tuple[uvicorn.Server, threading.Thread, Conveyor]] = []

    def start(token: str | None = None) -> Server:
        db_url = f"sqlite:///{tmp_path}/dash-{len(running)}.db"
        settings = Settings(lease_s=5.0, shutdown_grace_s=2.0, poll_interval_s=0.1, api_token=token)
        conveyor = Conveyor(db_url, settings=settings)
        conveyor.backend.migrate()
        server, thread, url = _serve(build_app(conveyor))
        running.append((server, thread, conveyor))
        return Server(url, conveyor, db_url, token)

    yield start
    for server, thread, conveyor in running:
        server.should_exit = True
        thread.join(timeout=10)
        conveyor.close()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def worker(server: Server) -> Iterator[subprocess.Popen[bytes]]:
    """A real `conveyor worker` process on the server's database."""
    env = {**os.environ, "CONVEYOR_LEASE_S": "5", "CONVEYOR_SHUTDOWN_GRACE_S": "2", "CONVEYOR_POLL_INTERVAL_S": "0.1"}
    env.pop("CONVEYOR_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "--db", server.db_url, "--processes", "0", "--concurrency", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: server.conveyor.list_workers() or proc.poll() is not None, timeout=30, what="the worker")
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "worker died"
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI must run the browser tests (.ci/run installs it)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.js_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
