"""One contract everywhere (issue 17): the same enqueue gives the same job on both backends, workers claim only what
they can run, values are stored as given or refused, a success clears an earlier attempt's error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor, JobStatus
from conveyor.errors import InvalidArgumentsError, UnknownTaskError
from conveyor.settings import Settings
from conveyor.testing import drain
from tests.backends.test_conformance import running_worker
from tests.conftest import wait_for

VOLATILE = {"id", "created_at", "updated_at", "run_at", "started_at", "completed_at", "worker_id"}


def _tasks(app: Conveyor) -> None:
    @app.task(timeout=300, priority=5, queue="reports", max_retries=2)
    def report(ctx: object, name: str) -> dict[str, str]:
        return {"report": name}

    @app.task
    def plain(n: int) -> int:
        return n


def _every_path(app: Conveyor) -> list[dict[str, Any]]:
    """A job enqueued through each Python path with and without options, run to completion, as JSON."""
    jobs = [
        app.enqueue("report", {"name": "a"}),
        app.enqueue("report", {"name": "b"}, priority=1, max_retries=0, timeout=5, tags=["t"], metadata={"k": 1}),
        app.enqueue_many("report", [{"name": "c"}], queue="other")[0],
        app.enqueue_batch([{"type": "plain", "args": {"n": 1}}, {"type": "report", "args": {"name": "d"}}])[1],
        app.enqueue("plain", {"n": 2}, delay=0),
        app.enqueue("demo.echo", {"x": 1}),
    ]
    drain(app, queues=["default", "reports", "other"])
    out = []
    for job in jobs:
        stored = app.require_job(job.id).to_dict()
        out.append({k: v for k, v in stored.items() if k not in VOLATILE})
    return out


def test_the_same_enqueue_gives_the_same_job_on_both_backends(sqlite_url: str, pg_url: str) -> None:
    """Full job objects compared across backends (only ids and times differ), for every Python enqueue path."""
    results = []
    for url in (sqlite_url, pg_url):
        app = Conveyor(url, settings=Settings(max_retries=4))
        _tasks(app)
        try:
            results.append(_every_path(app))
        finally:
            app.close()
    sqlite_jobs, pg_jobs = results
    assert sqlite_jobs == pg_jobs
    first = sqlite_jobs[0]
    assert (first["queue"], first["priority"], first["timeout"], first["max_retries"]) == ("reports", 5, 300.0, 2)
    assert sqlite_jobs[4]["max_retries"] == 4  # no task default: the settings' CONVEYOR_MAX_RETRIES
    assert sqlite_jobs[5]["max_retries"] == 4  # the demo tasks declare none either
    assert all(j["status"] == "completed" for j in sqlite_jobs)


@pytest.fixture
def two_apps(db_url: str, settings: Settings) -> Iterator[tuple[Conveyor, Conveyor]]:
    """Two processes' apps on one database: `ops` (the dashboard's: built-in tasks only) and `shop` (a user app)."""
    ops = Conveyor(db_url, settings=settings)
    shop = Conveyor(db_url, settings=settings)

    @shop.task(max_retries=3)
    def order(n: int) -> int:
        return n

    yield ops, shop
    ops.close()
    shop.close()


def test_a_worker_claims_only_the_types_it_runs(two_apps: tuple[Conveyor, Conveyor]) -> None:
    """A worker beside another app's (the dashboard's `serve` beside `worker --app shop:app`) leaves the other app's
    jobs pending for a worker that runs them; `stats` names them while no live worker runs their type."""
    ops, shop = two_apps
    orders = shop.enqueue_many("order", [{"n": n} for n in range(5)])
    echo = ops.enqueue("demo.echo", {"x": 1})
    with running_worker(ops, concurrency=2):
        wait_for(lambda: ops.require_job(echo.id).status is JobStatus.COMPLETED, 15, what="the echo job")
        wait_for(lambda: ops.stats().unserved, 10, what="a live worker's types in stats")
        assert ops.stats().unserved == [{"type": "order", "pending": 5, "scheduled": 0}]
        assert all(ops.require_job(j.id).status is JobStatus.PENDING for j in orders)
        assert all(ops.require_job(j.id).attempts == 0 for j in orders)
    assert drain(shop) == 5
    assert all(shop.require_job(j.id).status is JobStatus.COMPLETED for j in orders)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ({"x": float("nan")}, "args.x: nan is not valid JSON"),
        ({"x": [1, float("inf")]}, "args.x[1]: inf is not valid JSON"),
        ({"x": "a\x00b"}, "args.x: a string with a NUL character"),
        ({"x": {"a\x00": 1}}, "args.x: a key with a NUL character"),
    ],
)
def test_arguments_json_cannot_hold_are_refused_never_altered(app: Conveyor, args: dict[str, Any],
                                                             where: str) -> None:
    with pytest.raises(InvalidArgumentsError, match=where.replace("[", r"\[").replace("]", r"\]")):
        app.enqueue("demo.echo", args)
    with pytest.raises(InvalidArgumentsError, match=r"args\[1\]"):
        app.enqueue_many("demo.echo", [{"ok": 1}, args])
    assert app.list_jobs().jobs == []  # nothing stored


def test_metadata_and_tags_json_cannot_hold_are_refused(app: Conveyor) -> None:
    with pytest.raises(InvalidArgumentsError, match=r"metadata\.m: nan"):
        app.enqueue("demo.echo", {}, metadata={"m": float("nan")})
    with pytest.raises(InvalidArgumentsError, match="tags"):
        app.enqueue("demo.echo", {}, tags=["a\x00"])
    assert app.list_jobs().jobs == []


def test_an_unknown_type_is_the_same_error_on_every_path(app: Conveyor) -> None:
    with pytest.raises(UnknownTaskError, match="unknown task type 'nope'"):
        app.enqueue("nope", {})
    with pytest.raises(UnknownTaskError, match=r"jobs\[1\]: unknown task type 'nope'"):
        app.enqueue_batch([{"type": "demo.echo"}, {"type": "nope"}])
    assert app.list_jobs().jobs == []


def test_a_success_after_a_retry_clears_the_error_and_history_keeps_it(app: Conveyor) -> None:
    job = app.enqueue("demo.fail", {"message": "flaky", "times": 1}, max_retries=1)
    drain(app)
    failed_once = app.require_job(job.id)
    assert failed_once.status is JobStatus.SCHEDULED and "flaky (attempt 1)" in (failed_once.error or "")
    _run_due(app)  # the retry is due after its backoff
    done = app.require_job(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert done.error is None and done.error_detail is None
    assert any("flaky (attempt 1)" in (e.message or "") for e in app.job_events(job.id))


def _run_due(app: Conveyor) -> None:
    later = time.time() + 3600
    original = app.clock
    app.clock = lambda: later  # type: ignore[method-assign]
    try:
        drain(app)
    finally:
        app.clock = original  # type: ignore[method-assign]


def test_unique_key_says_when_the_existing_job_came_back(app: Conveyor) -> None:
    first = app.enqueue("demo.echo", {}, unique_key="k")
    second = app.enqueue("demo.echo", {"other": True}, unique_key="k")
    assert not first.existing and second.existing and second.id == first.id
    assert not app.require_job(first.id).existing  # a job read back later says nothing of it
