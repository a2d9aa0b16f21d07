"""Dependencies under faults, with real `conveyor worker` processes: a worker SIGKILLed while it runs a step (the
step runs again after its lease, the workflow still completes, no child starts twice or before its parents), and
several processes completing the last parents of the same children at once (each child becomes ready exactly once)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobStatus
from conveyor.workflows import WorkflowStatus
from tests.acceptance import tasks
from tests.acceptance.conftest import APP, CONVEYOR, ROOT
from tests.acceptance.tasks import read_notes
from tests.conftest import wait_for

LEASE_S = 1.5
Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def acc_app(db_url: str) -> Iterator[Conveyor]:
    app = tasks.make_app(db_url)
    yield app
    app.close()


@pytest.fixture
def start_worker(db_url: str, tmp_path: Path) -> Iterator[Start]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(CONVEYOR_LEASE_S=str(LEASE_S), CONVEYOR_SHUTDOWN_GRACE_S="2", CONVEYOR_POLL_INTERVAL_S="0.1")
        with (tmp_path / f"worker-{len(started)}.out").open("wb") as out:
            proc = subprocess.Popen([CONVEYOR, "worker", "--db", db_url, "--app", APP, *args], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_a_step_whose_worker_is_killed_runs_again_and_the_workflow_completes(
    acc_app: Conveyor, start_worker: Start, tmp_path: Path
) -> None:
    log = str(tmp_path / "notes.log")
    wf = acc_app.workflow("survives")
    first = wf.step("first", "slow_first", log=log, key="first")  # its first attempt hangs
    second = wf.step("second", "record", after=[first], log=log, key="second")
    wf.step("third", "record", after=[first, second], log=log, key="third")
    run = wf.enqueue()

    victim = start_worker("--processes", "0")
    wait_for(lambda: any(n[:3] == ["start", "first", "1"] for n in read_notes(log)), 30, what="the first attempt")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert acc_app.require_workflow(run.id).step("second").status is JobStatus.WAITING
    start_worker("--processes", "0")
    wait_for(lambda: acc_app.require_workflow(run.id).is_terminal, 60, what="the workflow to end")

    done = acc_app.require_workflow(run.id)
    assert done.status is WorkflowStatus.COMPLETED and done.steps_done == 3
    assert done.step("first").attempts == 2
    notes = [n[:3] for n in read_notes(log)]
    assert notes == [["start", "first", "1"], ["start", "first", "2"], ["ran", "second", done.step("second").id],
                     ["ran", "third", done.step("third").id]]
    for name, parents in (("second", ["first"]), ("third", ["first", "second"])):
        started = done.step(name).started_at
        assert started is not None
        assert all(started >= done.step(p).completed_at for p in parents)  # type: ignore[operator]


def test_children_whose_last_parents_complete_at_once_start_exactly_once(
    acc_app: Conveyor, start_worker: Start, tmp_path: Path
) -> None:
    log = str(tmp_path / "notes.log")
    children = []
    for i in range(60):  # each child's two parents are claimed together, by different processes or slots
        parents = acc_app.enqueue_many("effect", [{"log": log, "i": 2 * i}, {"log": log, "i": 2 * i + 1}])
        children.append(acc_app.enqueue("record", {"log": log, "key": f"child-{i}"},
                                        depends_on=[p.id for p in parents]))
    start_worker("--processes", "4", "--concurrency", "4")
    wait_for(lambda: all(acc_app.require_job(c.id).is_terminal for c in children), 90, what="every child to run")

    ran = [n for n in read_notes(log) if n[0] == "ran"]
    assert sorted(n[1] for n in ran) == sorted(f"child-{i}" for i in range(60))  # each once
    for child in children:
        job = acc_app.require_job(child.id)
        assert job.status is JobStatus.COMPLETED and job.attempts == 1
        moves = [(e.from_status, e.to_status) for e in acc_app.job_events(child.id)]
        assert moves.count((JobStatus.WAITING, JobStatus.PENDING)) == 1, moves
        parents = [acc_app.require_job(p) for p in job.depends_on]
        assert all(job.started_at >= p.completed_at for p in parents)  # type: ignore[operator]
