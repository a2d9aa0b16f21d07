"""Real Conveyor processes (`conveyor worker`, `conveyor serve`, one-shot commands) for the fault tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""  # a server's base URL

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None


class Procs:
    """Conveyor processes started by a test, each in its own process group, all killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Proc] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "CONVEYOR_LEASE_S": str(LEASE_S),
                "CONVEYOR_SHUTDOWN_GRACE_S": "5", "CONVEYOR_POLL_INTERVAL_S": "0.2", **extra}

    def start(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        """`conveyor ARGS...` in the background, its output in a log file."""
        path = self.tmp / f"proc-{len(self.started)}-{args[0]}.log"
        with path.open("wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "conveyor", *args], cwd=ROOT, env=env or self.env(),
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(popen, path)
        self.started.append(proc)
        return proc

    def serve(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        """`conveyor serve ARGS...` on a free port, once it answers."""
        port = free_port()
        proc = self.start("serve", "--port", str(port), *args, env=env)
        proc.url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.alive(), f"conveyor serve exited:\n{proc.log()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{proc.url}/healthz", timeout=2).status_code == 200
            return False

        wait_for(up, 60, 0.1, what="conveyor serve to answer")
        return proc

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`conveyor ARGS...` to its end."""
        return subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=ROOT, env=self.env(), text=True,
                              capture_output=True, timeout=timeout, check=False)

    def close(self) -> None:
        for proc in self.started:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGCONT)
                    os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=15)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path)
    yield group
    group.close()
