"""Real `conveyor worker` processes on a SQLite file, loading `tests.acceptance.tasks:app`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import Conveyor, JobStatus
from tests.acceptance import tasks
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
CONVEYOR = str(Path(sys.executable).parent / "conveyor")
APP = "tests.acceptance.tasks:app"
LEASE_S = 2.0
GRACE_S = 2.0


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    output_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.pid} still running after {timeout}s; its output:\n{self.output()[-4000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def log(tmp_path: Path) -> str:
    """The file the tasks append their notes to."""
    return str(tmp_path / "notes.log")


@pytest.fixture
def acc_app(sqlite_url: str) -> Iterator[Conveyor]:
    """The tasks' app on the test's database, used by the test itself to enqueue and inspect."""
    app = tasks.make_app(sqlite_url)
    yield app
    app.close()


@pytest.fixture
def start_worker(sqlite_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start(*args: str, lease: float = LEASE_S, grace: float = GRACE_S, db_flag: bool = True) -> WorkerProcess:
        """`conveyor worker --db URL --app ... ARGS`; with `db_flag=False` the URL is in the environment instead."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        if not db_flag:
            env["CONVEYOR_DATABASE_URL"] = sqlite_url
        env.update(
            CONVEYOR_LEASE_S=str(lease),
            CONVEYOR_SHUTDOWN_GRACE_S=str(grace),
            CONVEYOR_POLL_INTERVAL_S="0.1",
            PYTHONUNBUFFERED="1",
        )
        output_path = tmp_path / f"worker-{len(started)}.out"
        with output_path.open("wb") as out:
            proc = subprocess.Popen(
                [CONVEYOR, "worker", *(["--db", sqlite_url] if db_flag else []), "--app", APP, *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, output_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive():  # a graceful stop, then an immediate one, then a kill
            worker.signal(signal.SIGTERM)
            time.sleep(0.2)
            if worker.alive():
                worker.signal(signal.SIGTERM)
            try:
                worker.proc.wait(15)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(5)


def wait_status(app: Conveyor, job_id: str, status: JobStatus | str, timeout: float = 30.0) -> None:
    wanted = JobStatus(status)
    wait_for(
        lambda: app.require_job(job_id).status is wanted,
        timeout=timeout,
        interval=0.05,
        what=f"job {job_id} to be {wanted}",
    )


def wait_terminal(app: Conveyor, job_ids: list[str], timeout: float = 30.0) -> None:
    wait_for(
        lambda: all(app.require_job(j).is_terminal for j in job_ids),
        timeout=timeout,
        interval=0.05,
        what=f"{len(job_ids)} jobs to end",
    )


def wait_note(log: str, *prefix: str, timeout: float = 30.0) -> list[str]:
    """Wait until a note starting with these words was written; returns it."""

    def find() -> list[str] | None:
        for words in tasks.read_notes(log):
            if words[: len(prefix)] == list(prefix):
                return words
        return None

    found = wait_for(find, timeout=timeout, interval=0.05, what=f"a note {' '.join(prefix)!r}")
    assert isinstance(found, list)
    return found
