"""SQLite when the disk is full, and when the database file or its directory is read-only: every refused write says
why (the Python API, the CLI, the REST API's 503), the worker logs it and retries instead of crashing or failing jobs,
nothing accepted is lost, and once space returns the worker carries on and writes the outcomes it held."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor, JobStatus
from conveyor.errors import BackendError
from tests.conftest import wait_for
from tests.faults import tasks
from tests.faults.conftest import Procs
from tests.faults.tasks import APP

DISK_FULL = "the disk holding the database is full"
READ_ONLY = "the database is read-only"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, so that filling it fills nobody else's disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system has no block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for block in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def unavailable(reason: str) -> dict[str, object]:
    """The REST API's 503 body for a database that refuses writes for `reason`."""
    return {"error": {"code": "backend_error", "message": f"the database is unavailable: {reason}"}}


def make_app(url: str) -> Conveyor:
    app = Conveyor(url)
    app.tasks.update(tasks.app.tasks)
    return app


def statuses(app: Conveyor, ids: list[str]) -> Counter[JobStatus]:
    return Counter(app.require_job(i).status for i in ids)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_full_disk_refuses_writes_clearly_and_recovers(small_disk: Path, procs: Procs, tmp_path: Path) -> None:
    url = f"sqlite:///{small_disk}/conveyor.db"
    log = str(tmp_path / "effects.log")
    app = make_app(url)
    try:
        before = [j.id for j in app.enqueue_many("record", [{"log": log, "i": i, "size": 20_000} for i in range(20)])]
        worker = procs.start("worker", "--db", url, "--app", APP, "--processes", "0", "--concurrency", "4")
        server = procs.serve("--db", url, "--app", APP, "--no-worker")
        wait_for(lambda: statuses(app, before)[JobStatus.COMPLETED] == 20, 60, 0.1, what="the first jobs done")
        # four jobs running when the disk fills: their outcomes cannot be written until space returns
        running = [j.id for j in app.enqueue_many("record", [{"log": log, "i": 100 + i, "seconds": 3.0}
                                                             for i in range(4)])]
        wait_for(lambda: statuses(app, running)[JobStatus.PROCESSING] == 4, 30, 0.05, what="four jobs running")
        fill(small_disk / "filler")

        accepted: list[str] = []  # the last free pages of the database take a few more jobs, then it refuses
        refused: BackendError | None = None
        big = {"log": log, "i": 0, "size": 0, "seconds": 0.0}
        for i in range(500):
            try:
                accepted.append(app.enqueue("record", {**big, "i": 1000 + i, "pad": "p" * 50_000}).id)
            except BackendError as exc:
                refused = exc
                break
        assert refused is not None, "the disk never filled"
        assert refused.reason == DISK_FULL
        assert f"the disk holding {small_disk}/conveyor.db is full (database or disk is full)" in refused.message

        padded = {**big, "pad": "p" * 50_000}
        answer = httpx.post(f"{server.url}/api/v1/jobs", json={"type": "record", "args": padded}, timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.json() == unavailable(DISK_FULL)
        cli = procs.run("enqueue", "record", "--db", url, "--app", APP, "--args", json.dumps(padded))
        assert cli.returncode != 0, cli
        assert cli.stderr.strip().startswith("error: ") and "is full" in cli.stderr and cli.stderr.count("\n") == 1

        # the worker logs each failed write and retries; its heartbeats fail for longer than its lease
        wait_for(lambda: worker.log().count("heartbeat failed: SQLite error: the disk holding") >= 5, 30, 0.1,
                 what="the worker's failed heartbeats")
        wait_for(lambda: {e[0] for e in tasks.effects(log)} >= set(running), 30, 0.1, what="the running jobs' work")
        wait_for(lambda: "claim failed, retrying: SQLite error: the disk holding" in worker.log(), 30, 0.1,
                 what="the worker failing to write their outcomes")
        assert worker.alive() and server.alive()

        (small_disk / "filler").unlink()  # space returns
        everything = before + running + accepted
        wait_for(lambda: statuses(app, everything)[JobStatus.COMPLETED] == len(everything), 90, 0.2,
                 what="every accepted job done after space returned")
        assert [app.require_job(j).attempts for j in running] == [1, 1, 1, 1]  # outcomes held, written after
        ran = Counter(e[0] for e in tasks.effects(log))
        assert set(ran) == set(everything) and set(ran.values()) == {1}, ran.most_common(3)
        assert len(app.list_jobs(limit=1000).jobs) == len(everything)  # what was refused was not stored
        assert not any(job.error for job in app.list_jobs(limit=1000).jobs)
        again = httpx.post(f"{server.url}/api/v1/jobs", json={"type": "record", "args": big}, timeout=30)
        assert again.status_code == 201, again.text
        assert worker.alive() and "Traceback" not in worker.log()
    finally:
        app.close()


@pytest.mark.slow
def test_a_batch_bigger_than_the_free_space_is_refused_whole(small_disk: Path) -> None:
    """A batch that outgrows the page cache spills to the disk mid-transaction, and SQLite rolls the transaction
    back itself: the error says the disk is full (not that there was nothing left to roll back), nothing of the
    batch is stored, and the next enqueue goes through."""
    app = make_app(f"sqlite:///{small_disk}/conveyor.db")
    try:
        kept = app.enqueue("record", {"log": "-", "i": 0})
        with pytest.raises(BackendError) as refused:
            app.enqueue_many("record", [{"log": "-", "i": i, "pad": "p" * 100_000} for i in range(700)])
        assert refused.value.reason == DISK_FULL, refused.value
        assert [j.id for j in app.list_jobs(limit=1000).jobs] == [kept.id]
        assert app.enqueue("record", {"log": "-", "i": 1}).status is JobStatus.PENDING
    finally:
        app.close()


class ReadOnly:
    """Files and directories made read-only for every process of the test, root included: a read-only bind mount
    over them (root ignores permission bits); without root, their permission bits."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def on(self, path: Path) -> None:
        if os.geteuid() == 0:
            subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
        self.paths.append(path)

    def off(self, path: Path) -> None:
        self.paths.remove(path)
        if os.geteuid() == 0:
            subprocess.run(["umount", "--lazy", str(path)], check=True)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def read_only() -> Iterator[ReadOnly]:
    made = ReadOnly()
    yield made
    for path in reversed(made.paths):
        made.off(path)


@pytest.mark.timeout(180)
def test_read_only_database_file_reads_and_refuses_writes_clearly(
    tmp_path: Path, procs: Procs, read_only: ReadOnly
) -> None:
    """The file is read-only (its directory is not): reads work everywhere; every write is refused with the reason;
    a worker logs it and retries without failing anything; once the file is writable again and the processes are
    restarted (SQLite keeps a connection it opened read-only so), the jobs run."""
    log = str(tmp_path / "effects.log")
    db = tmp_path / "conveyor.db"
    url = f"sqlite:///{db}"
    app = make_app(url)
    ids = [j.id for j in app.enqueue_many("record", [{"log": log, "i": i} for i in range(3)])]
    app.close()
    read_only.on(db)

    listed = procs.run("jobs", "list", "--db", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {j["id"] for j in json.loads(listed.stdout)["jobs"]} == set(ids)
    refused = procs.run("enqueue", "record", "--db", url, "--app", APP, "--args", json.dumps({"log": log, "i": 9}))
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused
    assert f"{db} is read-only: make it and its directory writable" in refused.stderr

    server = procs.serve("--db", url, "--app", APP, "--no-worker")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert {j["id"] for j in client.get("/api/v1/jobs").json()["jobs"]} == set(ids)
        answer = client.post("/api/v1/jobs", json={"type": "record", "args": {"log": log, "i": 9}})
        assert answer.status_code == 503, answer.text
        assert answer.json() == unavailable(READ_ONLY)
        source = client.post("/api/v1/sources/text", json={"namespace": "n", "text": "hello"})  # the ingestion's
        assert source.status_code == 503, source.text  # own store says it the same way (it said 500 and SQLite's
        assert source.json()["error"]["message"].startswith("the database is unavailable")  # message)

    worker = procs.start("worker", "--db", url, "--app", APP, "--processes", "0")
    wait_for(lambda: worker.log().count("cannot start yet, retrying") >= 2, 30, 0.1, what="the worker retrying")
    assert worker.alive() and "is read-only" in worker.log()
    app = make_app(url)
    try:
        assert [app.require_job(i).status for i in ids] == [JobStatus.PENDING] * 3  # nothing failed, nothing lost
        app.close()
        for proc in (worker, server):
            proc.popen.send_signal(signal.SIGTERM)
            proc.popen.wait(30)
        read_only.off(db)
        procs.start("worker", "--db", url, "--app", APP, "--processes", "0")
        wait_for(lambda: statuses(app, ids)[JobStatus.COMPLETED] == 3, 60, 0.1, what="the jobs run after the fix")
        assert Counter(e[0] for e in tasks.effects(log)) == Counter(ids)
    finally:
        app.close()


def test_read_only_directory_is_one_clear_error(tmp_path: Path, procs: Procs, read_only: ReadOnly) -> None:
    """In WAL mode SQLite needs two files beside the database: with the directory read-only it cannot open it at
    all, and every command says so in one line instead of a stack of SQLite errors."""
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder}/conveyor.db"
    app = make_app(url)
    assert app.list_jobs().jobs == []  # created, migrated
    app.close()  # cleanly: its -wal and -shm files are gone
    assert sorted(p.name for p in folder.iterdir()) == ["conveyor.db"]
    read_only.on(folder)
    expected = f"its directory {folder} is read-only, and SQLite must create conveyor.db-wal and conveyor.db-shm there"
    for command in (["jobs", "list", "--db", url], ["worker", "--db", url, "--app", APP, "--processes", "0"]):
        out = procs.run(*command)
        assert out.returncode != 0, out
        assert expected in out.stderr and out.stderr.count("\n") == 1, out.stderr
