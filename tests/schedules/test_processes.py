"""Real processes racing for the same ticks: two `conveyor worker` processes and two `conveyor serve --no-worker` on one
database, a schedule every second, one worker SIGKILLed and started again: one job per tick, and no tick missing
while any process was up."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
CONVEYOR = str(Path(sys.executable).parent / "conveyor")
APP = "tests.schedules.periodic_app:app"
SOAK_S = float(os.environ.get("CONVEYOR_SCHEDULE_SOAK_S", "0"))  # longer runs: e.g. 180 (the three minutes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(db_url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_DATABASE_URL=db_url, CONVEYOR_LEASE_S="2", CONVEYOR_SHUTDOWN_GRACE_S="2",
               CONVEYOR_POLL_INTERVAL_S="0.1")
    with log.open("wb") as out:
        return subprocess.Popen([CONVEYOR, *args, "--app", APP], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def ticks(app: Conveyor) -> list[float]:
    jobs = app.list_jobs(limit=1000).jobs
    return sorted(datetime.fromisoformat(j.metadata["scheduled_for"]).timestamp()
                  for j in jobs if j.metadata.get("schedule") == "every-second")


@pytest.mark.slow
def test_processes_fire_each_tick_once_through_a_kill_and_a_restart(db_url: str, tmp_path: Path) -> None:
    app = Conveyor(db_url)
    app.backend.migrate()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start(db_url, "worker", "--processes", "0", log=tmp_path / "w1.log"))
        procs.append(start(db_url, "worker", "--processes", "0", log=tmp_path / "w2.log"))
        for i in range(2):
            port = str(free_port())
            procs.append(start(db_url, "serve", "--no-worker", "--port", port, log=tmp_path / f"s{i}.log"))
        wait_for(lambda: len(ticks(app)) >= 3, timeout=60, what="the first ticks")
        time.sleep(SOAK_S)
        procs[0].send_signal(signal.SIGKILL)  # wherever it was, perhaps in the middle of a tick
        procs[0].wait(10)
        time.sleep(2.5)
        procs[0] = start(db_url, "worker", "--processes", "0", log=tmp_path / "w1-again.log")
        seen = len(ticks(app))
        wait_for(lambda: len(ticks(app)) >= seen + 3, timeout=60, what="ticks after the restart")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    found = ticks(app)
    app.close()
    assert len(found) == len(set(found)), f"a tick fired twice: {found}"
    gaps = [b for a, b in itertools.pairwise(found) if b - a != 1.0]
    assert not gaps, f"ticks missing before {gaps} while processes were up"
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-3000:]


DIE_MID_TICK = """
import os, signal, sys
from conveyor import Conveyor
from conveyor.backends.sql_backend import SQLBackend

def die(*args, **kwargs):  # after the tick is claimed, before its job is inserted: inside the transaction
    os.kill(os.getpid(), signal.SIGKILL)

SQLBackend._insert_unique = die
Conveyor(sys.argv[1], clock=lambda: float(sys.argv[2])).schedules.fire_due()
"""


def test_a_process_killed_in_the_middle_of_a_tick(db_url: str) -> None:
    t0 = datetime(2026, 6, 1, 12, 0).timestamp()
    app = Conveyor(db_url, clock=lambda: t0)
    try:
        app.schedules.create(name="mid", task="demo.echo", cron="* * * * *")
        due = app.schedules.get("mid").next_run_at
        assert due is not None
        killed = subprocess.run([sys.executable, "-c", DIE_MID_TICK, db_url, str(due + 1)], cwd=ROOT, timeout=60,
                                check=False, capture_output=True)
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
        assert app.schedules.get("mid").next_run_at == due, "the killed transaction claimed nothing"
        assert app.list_jobs().jobs == []
        (job,) = app.schedules.fire_due(due + 2)  # the restarted process: the tick is still due, and fires once
        assert app.schedules.fire_due(due + 3) == []
        assert [j.id for j in app.list_jobs().jobs] == [job.id]
    finally:
        app.close()
