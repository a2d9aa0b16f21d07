"""The examples run for real: their own processes (a worker, a server, a script, a Node program) on a temporary
SQLite file or a fresh PostgreSQL database, started from the example's directory as its README says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port
from tests.conftest import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Processes:
    """Processes started for one test, stopped (SIGTERM, then SIGKILL) at its end; their output goes to files."""

    tmp: Path
    env: dict[str, str]
    started: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, example: str, *argv: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.tmp / f"proc-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv), cwd=EXAMPLES / example, env={**self.env, **(env or {})}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started.append((proc, log))
        return proc

    def run(self, example: str, *argv: str, timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
        """Run a command to its end; its output, or the test fails with it."""
        done = subprocess.run(
            list(argv), cwd=EXAMPLES / example, env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def worker(self, example: str, app: str, *args: str) -> subprocess.Popen[bytes]:
        return self.start(example, sys.executable, "-m", "conveyor", "worker", "--app", app, "--processes", "0",
                          "--concurrency", "4", *args)

    def server(self, example: str, *argv: str) -> str:
        """Start an HTTP server (`{port}` in argv is replaced by a free port) and wait for `/healthz` or `/`."""
        port = free_port()
        proc = self.start(example, *(a.replace("{port}", str(port)) for a in argv))
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, f"the server exited: {self.output(proc)}"
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, interval=0.1, what=f"{argv} to answer")
        return base

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return next(log.read_text(errors="replace") for p, log in self.started if p is proc)

    def stop_all(self) -> None:
        for proc, _ in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_API_TOKEN"}
    env.update(
        CONVEYOR_DATABASE_URL=f"sqlite:///{tmp_path}/example.db",
        CONVEYOR_DATA_DIR=str(tmp_path / "data"),
        CONVEYOR_POLL_INTERVAL_S="0.1",
        CONVEYOR_SHUTDOWN_GRACE_S="5",
    )
    running = Processes(tmp_path, env)
    yield running
    running.stop_all()
