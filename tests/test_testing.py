"""`conveyor.testing`: the helpers users test their own tasks with."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, JobContext, JobStatus
from conveyor.testing import assert_enqueued, drain, enqueued, run_job_inline


@pytest.fixture
def app(sqlite_url: str) -> Iterator[Conveyor]:
    with Conveyor(sqlite_url) as conveyor:

        @conveyor.task
        def signup(ctx: JobContext, email: str) -> None:
            ctx.enqueue("send_welcome", {"email": email})

        @conveyor.task
        def send_welcome(ctx: JobContext, email: str) -> str:
            return f"sent to {email}"

        @conveyor.task(max_retries=2)
        def flaky(ctx: JobContext) -> None:
            raise RuntimeError("down")

        yield conveyor


def test_the_docstring_example_on_an_in_memory_database() -> None:
    with Conveyor("sqlite:///:memory:") as app:

        @app.task
        def send_welcome(ctx: JobContext, email: str) -> None: ...

        app.enqueue("send_welcome", {"email": "ada@example.com"})
        assert_enqueued(app, "send_welcome", args={"email": "ada@example.com"})
        assert drain(app) == 1
        assert enqueued(app, "send_welcome") == []
        assert enqueued(app, "send_welcome", status="completed")[0].args == {"email": "ada@example.com"}


def test_drain_runs_follow_up_jobs_and_counts_them(app: Conveyor) -> None:
    app.enqueue("signup", {"email": "a@x"})
    app.enqueue("signup", {"email": "b@x"})
    assert drain(app) == 4
    welcomes = enqueued(app, "send_welcome", status="completed")
    assert [j.result for j in welcomes] == ["sent to a@x", "sent to b@x"]  # oldest first
    assert drain(app) == 0


def test_drain_leaves_scheduled_jobs_and_honours_max_jobs_and_queues(app: Conveyor) -> None:
    later = app.enqueue("send_welcome", {"email": "later@x"}, delay=3600)
    failing = app.enqueue("flaky")
    app.enqueue_many("send_welcome", [{"email": f"{i}@x"} for i in range(3)], queue="mail")
    assert drain(app, ["default"]) == 1  # flaky's first attempt; its retry waits for its backoff
    assert app.require_job(failing.id).status is JobStatus.SCHEDULED
    assert drain(app, max_jobs=2) == 2
    assert drain(app) == 1
    assert app.require_job(later.id).status is JobStatus.SCHEDULED


def test_drain_works_inside_a_running_event_loop(app: Conveyor) -> None:
    app.enqueue("send_welcome", {"email": "a@x"})

    async def async_test() -> int:
        return drain(app)

    assert asyncio.run(async_test()) == 1


def test_run_job_inline_returns_the_finished_job_and_runs_nothing_else(app: Conveyor) -> None:
    other = app.enqueue("send_welcome", {"email": "other@x"})
    job = run_job_inline(app, "send_welcome", {"email": "me@x"})
    assert job.status is JobStatus.COMPLETED and job.result == "sent to me@x" and job.attempts == 1
    assert app.require_job(other.id).status is JobStatus.PENDING
    failed = run_job_inline(app, "flaky", max_retries=0)
    assert failed.status is JobStatus.FAILED and failed.error == "RuntimeError: down"


def test_enqueued_filters_by_type_and_status(app: Conveyor) -> None:
    a = app.enqueue("send_welcome", {"email": "a@x"})
    b = app.enqueue("signup", {"email": "b@x"})
    c = app.enqueue("send_welcome", {"email": "c@x"}, delay=60)
    assert [j.id for j in enqueued(app)] == [a.id, b.id]  # pending, oldest first
    assert [j.id for j in enqueued(app, "send_welcome")] == [a.id]
    assert [j.id for j in enqueued(app, "send_welcome", status=None)] == [a.id, c.id]
    assert [j.id for j in enqueued(app, status="scheduled")] == [c.id]


def test_assert_enqueued(app: Conveyor) -> None:
    app.enqueue("send_welcome", {"email": "a@x"})
    app.enqueue("send_welcome", {"email": "b@x"}, delay=60)  # scheduled counts as enqueued
    assert len(assert_enqueued(app, "send_welcome")) == 2
    assert len(assert_enqueued(app, "send_welcome", count=2)) == 2
    assert [j.args for j in assert_enqueued(app, "send_welcome", args={"email": "b@x"})] == [{"email": "b@x"}]
    with pytest.raises(AssertionError, match="no 'signup' job enqueued"):
        assert_enqueued(app, "signup")
    with pytest.raises(AssertionError, match="with args"):
        assert_enqueued(app, "send_welcome", args={"email": "z@x"})
    with pytest.raises(AssertionError, match="expected 1 'send_welcome' jobs enqueued, found 2"):
        assert_enqueued(app, "send_welcome", count=1)
    assert assert_enqueued(app, "signup", count=0) == []
    drain(app)
    assert_enqueued(app, "send_welcome", count=1)  # the completed one no longer counts
