"""The Python API (SPEC section 2) on a real SQLite file: enqueue, validation, reading, waiting, steering, queues."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor import (
    Conveyor,
    InvalidArgumentsError,
    InvalidStateError,
    JobFailed,
    JobNotFoundError,
    JobStatus,
    UnknownTaskError,
)
from conveyor.testing import drain


@pytest.fixture
def app(sqlite_app: Conveyor) -> Conveyor:
    @sqlite_app.task
    def add(ctx: object, a: int, b: int = 0) -> int:
        return a + b

    @sqlite_app.task(max_retries=0)
    def boom(ctx: object) -> None:
        raise ValueError("boom")

    @sqlite_app.task(queue="reports", priority=7, max_retries=5, timeout=30)
    async def report(ctx: object, name: str) -> dict[str, str]:
        return {"report": name}

    return sqlite_app


def count_jobs(app: Conveyor) -> int:
    return len(app.list_jobs(limit=1000).jobs)


def test_public_names() -> None:
    assert set(conveyor.__all__) == {
        "BackendError", "Cancel", "ConfigError", "Conveyor", "ConveyorError", "InvalidArgumentsError",
        "InvalidStateError", "Job", "JobContext", "JobEvent", "JobFailed", "JobNotFoundError", "JobStatus",
        "QueueInfo", "Retry", "Settings", "Task", "UnknownTaskError", "WorkerInfo", "__version__",
    }
    for name in conveyor.__all__:
        assert hasattr(conveyor, name)


# ---------------------------------------------------------------------------------------------- enqueue
def test_enqueue_stores_a_pending_job_with_defaults(app: Conveyor) -> None:
    job = app.enqueue("add", {"a": 1, "b": 2})
    assert job.status is JobStatus.PENDING
    stored = app.get_job(job.id)
    assert stored is not None
    assert stored == job
    assert (stored.type, stored.queue, stored.priority, stored.args) == ("add", "default", 0, {"a": 1, "b": 2})
    assert stored.attempts == 0
    assert stored.max_retries == app.settings.max_retries == 3
    assert stored.progress == 0 and stored.result is None and stored.error is None
    assert stored.tags == [] and stored.metadata == {} and stored.unique_key is None
    assert stored.created_at.tzinfo is not None and stored.run_at == stored.created_at
    assert stored.worker_id is None and stored.started_at is None and stored.completed_at is None


def test_task_defaults_apply_and_options_override_them(app: Conveyor) -> None:
    job = app.tasks["report"].enqueue(name="q3")
    assert (job.queue, job.priority, job.max_retries, job.args) == ("reports", 7, 5, {"name": "q3"})
    job = app.enqueue("report", {"name": "q4"}, queue="urgent", priority=-2, max_retries=0, timeout=5)
    stored = app.require_job(job.id)
    assert (stored.queue, stored.priority, stored.max_retries, stored.timeout) == ("urgent", -2, 0, 5)


def test_tags_and_metadata_are_stored_and_filterable(app: Conveyor) -> None:
    job = app.enqueue("add", {"a": 1}, tags=["project:42", "source:web"], metadata={"who": "ada", "n": [1, 2]})
    app.enqueue("add", {"a": 2}, tags=["project:7"])
    stored = app.require_job(job.id)
    assert stored.tags == ["project:42", "source:web"]
    assert stored.metadata == {"who": "ada", "n": [1, 2]}
    assert [j.id for j in app.list_jobs(tag="project:42").jobs] == [job.id]
    with pytest.raises(InvalidArgumentsError):
        app.enqueue("add", {"a": 1}, tags=[""])
    with pytest.raises(InvalidArgumentsError):
        app.enqueue("add", {"a": 1}, metadata=["not", "an", "object"])  # type: ignore[arg-type]
    assert count_jobs(app) == 2


def test_arguments_are_validated_at_enqueue_and_nothing_is_stored(app: Conveyor) -> None:
    with pytest.raises(InvalidArgumentsError, match="a") as info:
        app.enqueue("add", {"a": "not a number"})
    assert info.value.errors and info.value.errors[0]["loc"] == ("a",)
    with pytest.raises(InvalidArgumentsError):
        app.enqueue("add", {"b": 1})  # a is required
    with pytest.raises(InvalidArgumentsError):
        app.enqueue("add", {"a": 1, "c": 3})  # unknown argument
    with pytest.raises(InvalidArgumentsError):
        app.enqueue("add", ["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentsError):
        app.tasks["add"].enqueue(a=[1])
    assert count_jobs(app) == 0
    # coercion follows the hints: "5" is a valid int
    assert app.enqueue("add", {"a": "5"}).args == {"a": 5}


def test_unknown_task_type_raises_and_stores_nothing(app: Conveyor) -> None:
    with pytest.raises(UnknownTaskError, match="nope") as info:
        app.enqueue("nope", {})
    assert info.value.task_type == "nope"
    with pytest.raises(UnknownTaskError):
        app.enqueue_many("nope", [{}])
    assert count_jobs(app) == 0


def test_enqueue_many_is_all_or_nothing(app: Conveyor) -> None:
    jobs = app.enqueue_many("add", [{"a": i} for i in range(5)], priority=3, tags=["batch"])
    assert [j.args["a"] for j in jobs] == list(range(5))
    assert len({j.id for j in jobs}) == 5
    assert all(app.require_job(j.id).priority == 3 and app.require_job(j.id).tags == ["batch"] for j in jobs)
    with pytest.raises(InvalidArgumentsError, match="1"):
        app.enqueue_many("add", [{"a": 10}, {"a": "x"}, {"a": 12}])
    with pytest.raises(InvalidArgumentsError):
        app.enqueue_many("add", [{"a": 10}, "not a dict"])  # type: ignore[list-item]
    assert count_jobs(app) == 5
    assert app.enqueue_many("add", []) == []


def test_delay_schedules_the_job(app: Conveyor) -> None:
    before = time.time()
    job = app.enqueue("add", {"a": 1}, delay=60)
    assert job.status is JobStatus.SCHEDULED
    assert before + 59 <= job.run_at.timestamp() <= time.time() + 61
    job = app.enqueue("add", {"a": 1}, delay=timedelta(minutes=2))  # type: ignore[arg-type]
    assert job.status is JobStatus.SCHEDULED and job.run_at.timestamp() >= before + 119
    assert app.enqueue("add", {"a": 1}, delay=0).status is JobStatus.PENDING
    assert drain(app) == 1  # only the undelayed one is ready


def test_run_at_schedules_and_a_past_run_at_is_ready(app: Conveyor) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    job = app.enqueue("add", {"a": 1}, run_at=when)
    assert job.status is JobStatus.SCHEDULED
    assert abs(app.require_job(job.id).run_at.timestamp() - when.timestamp()) < 0.01
    past = app.enqueue("add", {"a": 1}, run_at=datetime.now(UTC) - timedelta(hours=1))
    assert past.status is JobStatus.PENDING
    with pytest.raises(InvalidArgumentsError, match="timezone"):
        app.enqueue("add", {"a": 1}, run_at=datetime.now())
    with pytest.raises(InvalidArgumentsError, match="not both"):
        app.enqueue("add", {"a": 1}, run_at=when, delay=5)
    assert count_jobs(app) == 2


@pytest.mark.parametrize(
    "options",
    [
        {"delay": -1},
        {"delay": "soon"},
        {"delay": float("nan")},
        {"delay": float("inf")},
        {"delay": 1e12},  # the year 33715
        {"run_at": datetime(9999, 12, 31, tzinfo=UTC)},
        {"priority": 1.5},
        {"priority": True},
        {"max_retries": -1},
        {"max_retries": 2**40},
        {"priority": 2**63},
        {"priority": -(2**40)},
        {"timeout": 0},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"queue": ""},
        {"unique_key": ""},
    ],
)
def test_bad_enqueue_options_raise_and_store_nothing(app: Conveyor, options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentsError):
        app.enqueue("add", {"a": 1}, **options)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentsError):
        app.enqueue_many("add", [{"a": 1}, {"a": 2}], **options)  # type: ignore[arg-type]
    assert count_jobs(app) == 0


def test_negative_delay_message_names_the_value(app: Conveyor) -> None:
    with pytest.raises(InvalidArgumentsError, match=r"delay.*-5"):
        app.enqueue("add", {"a": 1}, delay=-5)


def test_unique_key_returns_the_open_job_until_it_finishes(app: Conveyor) -> None:
    first = app.enqueue("add", {"a": 1}, unique_key="k")
    second = app.enqueue("add", {"a": 2}, unique_key="k")
    assert second.id == first.id and second.args == {"a": 1}
    other = app.enqueue("add", {"a": 3}, unique_key="other")
    assert other.id != first.id
    assert count_jobs(app) == 2
    drain(app)
    assert app.require_job(first.id).status is JobStatus.COMPLETED
    third = app.enqueue("add", {"a": 4}, unique_key="k")  # the old one is finished: a new job
    assert third.id != first.id and third.status is JobStatus.PENDING


def test_unique_key_holds_for_a_scheduled_job(app: Conveyor) -> None:
    first = app.enqueue("add", {"a": 1}, unique_key="k", delay=60)
    assert app.enqueue("add", {"a": 1}, unique_key="k").id == first.id


# ---------------------------------------------------------------------------------------------- reading
def test_get_job_of_an_unknown_id_is_none(app: Conveyor) -> None:
    assert app.get_job("00000000-0000-0000-0000-000000000000") is None
    with pytest.raises(JobNotFoundError):
        app.require_job("missing")
    with pytest.raises(JobNotFoundError):
        app.job_events("missing")


def test_list_jobs_newest_first_with_filters_and_cursor(app: Conveyor) -> None:
    ids = [app.enqueue("add", {"a": i}).id for i in range(5)]
    report = app.enqueue("report", {"name": "x"})
    page = app.list_jobs(limit=4)
    assert [j.id for j in page.jobs] == [report.id, *reversed(ids[2:])]
    assert page.next_cursor is not None
    rest = app.list_jobs(limit=4, cursor=page.next_cursor)
    assert [j.id for j in rest.jobs] == list(reversed(ids[:2]))
    assert rest.next_cursor is None
    assert [j.id for j in app.list_jobs(type="report").jobs] == [report.id]
    assert [j.id for j in app.list_jobs(queue="reports").jobs] == [report.id]
    assert len(app.list_jobs(status="pending").jobs) == 6
    assert app.list_jobs(status=["completed", "failed"]).jobs == []
    with pytest.raises(InvalidArgumentsError, match="unknown status"):
        app.list_jobs(status="bogus")


# ---------------------------------------------------------------------------------------------- wait
def test_wait_returns_the_completed_job(app: Conveyor) -> None:
    job = app.enqueue("add", {"a": 2, "b": 3})
    worker = threading.Thread(target=drain, args=(app,))
    worker.start()
    done = app.wait(job.id, poll_interval=0.02, timeout=30)
    worker.join()
    assert done.status is JobStatus.COMPLETED and done.result == 5 and done.attempts == 1


def test_wait_raises_job_failed_with_the_job(app: Conveyor) -> None:
    job = app.enqueue("boom")
    drain(app)
    with pytest.raises(JobFailed, match="boom") as info:
        app.wait(job.id, timeout=5)
    assert info.value.job.id == job.id and info.value.job.status is JobStatus.FAILED
    cancelled = app.enqueue("add", {"a": 1})
    app.cancel(cancelled.id)
    with pytest.raises(JobFailed) as info:
        app.wait(cancelled.id, timeout=5)
    assert info.value.job.status is JobStatus.CANCELLED


def test_wait_times_out(app: Conveyor) -> None:
    job = app.enqueue("add", {"a": 1})
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="pending"):
        app.wait(job.id, poll_interval=0.05, timeout=0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(JobNotFoundError):
        app.wait("missing", timeout=1)


# ---------------------------------------------------------------------------------------------- steering
def test_cancel_waiting_jobs_at_once_and_refuse_terminal_ones(app: Conveyor) -> None:
    pending = app.enqueue("add", {"a": 1})
    scheduled = app.enqueue("add", {"a": 1}, delay=60)
    for job in (pending, scheduled):
        cancelled = app.cancel(job.id)
        assert cancelled.status is JobStatus.CANCELLED and cancelled.completed_at is not None
    with pytest.raises(InvalidStateError, match="cancelled"):
        app.cancel(pending.id)
    done = app.enqueue("add", {"a": 1})
    drain(app)
    with pytest.raises(InvalidStateError, match="completed"):
        app.cancel(done.id)
    with pytest.raises(JobNotFoundError):
        app.cancel("missing")


def test_retry_only_failed_or_cancelled_with_a_fresh_budget(app: Conveyor) -> None:
    job = app.enqueue("boom")
    with pytest.raises(InvalidStateError, match="pending"):
        app.retry(job.id)
    drain(app)
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    again = app.retry(job.id)
    assert again.status is JobStatus.PENDING and again.completed_at is None
    drain(app)
    failed = app.require_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2  # attempts keep counting
    assert [(e.from_status, e.to_status) for e in app.job_events(job.id)] == [
        (None, "pending"), ("pending", "processing"), ("processing", "failed"),
        ("failed", "pending"), ("pending", "processing"), ("processing", "failed"),
    ]
    cancelled = app.enqueue("add", {"a": 1})
    app.cancel(cancelled.id)
    assert app.retry(cancelled.id).status is JobStatus.PENDING
    drain(app)
    assert app.require_job(cancelled.id).status is JobStatus.COMPLETED
    with pytest.raises(InvalidStateError):
        app.retry(cancelled.id)
    with pytest.raises(JobNotFoundError):
        app.retry("missing")


def test_delete_removes_a_job_and_its_history_unless_processing(app: Conveyor) -> None:
    job = app.enqueue("add", {"a": 1})
    app.delete(job.id)
    assert app.get_job(job.id) is None
    assert app.backend.job_events(job.id) == []
    with pytest.raises(JobNotFoundError):
        app.delete(job.id)
    running = app.enqueue("add", {"a": 1})
    from conveyor.backends.base import ClaimParams

    now = time.time()
    claimed = app.backend.claim_jobs(ClaimParams("w", 1, now, now + 60))
    assert [c.id for c in claimed.jobs] == [running.id]
    with pytest.raises(InvalidStateError, match="processing"):
        app.delete(running.id)
    assert app.get_job(running.id) is not None


def test_purge_deletes_finished_jobs_only(app: Conveyor) -> None:
    done = app.enqueue("add", {"a": 1})
    failed = app.enqueue("boom")
    cancelled = app.enqueue("add", {"a": 1})
    app.cancel(cancelled.id)
    drain(app)
    waiting = app.enqueue("add", {"a": 1})
    later = app.enqueue("add", {"a": 1}, delay=600)
    assert app.purge() == 0  # nothing older than the retention
    assert app.purge(older_than_s=0, statuses=["failed"]) == 1
    assert app.get_job(failed.id) is None
    with pytest.raises(InvalidArgumentsError):
        app.purge(older_than_s=0, statuses=["pending"])
    with pytest.raises(InvalidArgumentsError, match="unknown status"):
        app.purge(older_than_s=0, statuses=["bogus"])
    assert app.purge(older_than_s=0) == 2
    assert app.get_job(done.id) is None and app.get_job(cancelled.id) is None
    assert {j.id for j in app.list_jobs().jobs} == {waiting.id, later.id}


# ---------------------------------------------------------------------------------------------- queues
def test_queue_settings_are_stored_and_listed_with_counts(app: Conveyor) -> None:
    app.enqueue("report", {"name": "a"})
    app.enqueue("report", {"name": "b"}, delay=60)
    info = app.pause_queue("reports")
    assert info.paused and info.name == "reports"
    info = app.set_queue("reports", concurrency=2, rate_limit=5.0)
    assert (info.paused, info.concurrency, info.rate_limit) == (True, 2, 5.0)
    queues = {q.name: q for q in app.list_queues()}
    assert set(queues) == {"default", "reports"}
    assert queues["reports"].counts == {"pending": 1, "scheduled": 1}
    assert queues["reports"].to_dict()["counts"]["completed"] == 0
    info = app.resume_queue("reports")
    assert not info.paused and info.concurrency == 2  # untouched settings stay
    info = app.set_queue("reports", concurrency=None)
    assert info.concurrency is None and info.rate_limit == 5.0
    with pytest.raises(InvalidArgumentsError):
        app.set_queue("reports", concurrency=0)
    with pytest.raises(InvalidArgumentsError):
        app.set_queue("reports", rate_limit=-1)
    with pytest.raises(InvalidArgumentsError):
        app.set_queue("", paused=True)


def test_paused_queue_is_not_drained_until_resumed(app: Conveyor) -> None:
    job = app.enqueue("report", {"name": "a"})
    other = app.enqueue("add", {"a": 1})
    app.pause_queue("reports")
    assert drain(app) == 1
    assert app.require_job(job.id).status is JobStatus.PENDING
    assert app.require_job(other.id).status is JobStatus.COMPLETED
    app.resume_queue("reports")
    assert drain(app) == 1
    assert app.require_job(job.id).result == {"report": "a"}


def test_stats_count_by_status_and_type(app: Conveyor) -> None:
    app.enqueue("add", {"a": 1})
    app.enqueue("boom")
    app.enqueue("add", {"a": 1}, delay=60)
    drain(app)
    stats = app.stats()
    assert stats.counts["completed"] == 1 and stats.counts["failed"] == 1 and stats.counts["scheduled"] == 1
    assert stats.counts_by_type["add"] == {"completed": 1, "scheduled": 1}
    assert stats.durations["add"]["count"] == 1
    assert sum(m["completed"] for m in stats.throughput) == 1
    assert sum(m["failed"] for m in stats.throughput) == 1


def test_use_database_refuses_a_switch_after_first_use(app: Conveyor) -> None:
    app.enqueue("add", {"a": 1})
    with pytest.raises(conveyor.ConfigError):
        app.use_database("sqlite:///elsewhere.db")


def test_unsupported_database_url_is_a_config_error() -> None:
    bad = Conveyor("mysql://localhost/x")
    with pytest.raises(conveyor.ConfigError, match="unsupported database URL"):
        bad.enqueue("demo.echo", {})
    missing_dir = Conveyor("sqlite:////nonexistent-dir-xyz/sub/jobs.db")
    with pytest.raises(conveyor.ConfigError, match="does not exist"):
        missing_dir.get_job("x")
