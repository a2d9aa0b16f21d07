"""Which job changes become which webhook events (the outbox triggers), on both backends."""

from __future__ import annotations

from typing import Any

from conveyor import Conveyor, JobContext, Retry
from conveyor.webhooks import EVENTS, subscriptions
from conveyor.webhooks.subscriptions import WebhookSpec


def events_of(app: Conveyor, job_id: str) -> list[str]:
    return [d.event for d in subscriptions.store(app).job_deliveries(job_id)]


def test_every_job_event(hook_app: Conveyor) -> None:
    subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/", events=list(EVENTS)))
    calls = {"n": 0}

    @hook_app.task(name="steps", max_retries=2)
    def steps(ctx: JobContext) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Retry(after=0)
        ctx.progress(50, stage="half")
        return "done"

    job = hook_app.enqueue("steps", {})
    for _ in range(3):
        hook_app.run_worker(burst=True)
    assert hook_app.require_job(job.id).status == "completed"
    assert events_of(hook_app, job.id) == [
        "job.created", "job.started", "job.retrying", "job.started", "job.progress", "job.completed"
    ]

    failing = hook_app.enqueue("boom", {})
    hook_app.run_worker(burst=True)
    hook_app.retry(failing.id)
    hook_app.cancel(failing.id)
    assert events_of(hook_app, failing.id) == [
        "job.created", "job.started", "job.failed", "job.retrying", "job.cancelled"
    ]


def test_filters_by_type_queue_and_tag(hook_app: Conveyor) -> None:
    def hook(**flt: Any) -> str:
        spec = WebhookSpec(url="http://127.0.0.1:9/", events=["job.created"], filter=flt)
        return subscriptions.create(hook_app, spec).id

    by_type, by_queue, by_tag = hook(type="add"), hook(queue="mail"), hook(tag="vip")
    plain = hook_app.enqueue("add", {"a": 1, "b": 1})
    mail = hook_app.enqueue("boom", {}, queue="mail", tags=["vip", "x"])
    other = hook_app.enqueue("boom", {}, tags=["vipx"])
    owners = {j.id: {d.webhook_id for d in subscriptions.store(hook_app).job_deliveries(j.id)}
              for j in (plain, mail, other)}
    assert owners == {plain.id: {by_type}, mail.id: {by_queue, by_tag}, other.id: set()}


def test_paused_subscriptions_get_nothing_new(hook_app: Conveyor) -> None:
    hook = subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/", events=["job.created"]))
    subscriptions.change(hook_app, hook.id, subscriptions.WebhookPatch(paused=True))
    job = hook_app.enqueue("add", {"a": 1, "b": 1})
    assert events_of(hook_app, job.id) == []


def test_batches_write_one_delivery_per_job(hook_app: Conveyor) -> None:
    subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/", events=["job.created"]))
    jobs = hook_app.enqueue_many("add", [{"a": i, "b": 0} for i in range(120)])  # COPY on PostgreSQL
    assert all(events_of(hook_app, j.id) == ["job.created"] for j in jobs)


def test_deleting_a_subscription_deletes_its_deliveries(hook_app: Conveyor) -> None:
    hook = subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/", events=["job.created"]))
    job = hook_app.enqueue("add", {"a": 1, "b": 1})
    subscriptions.store(hook_app).delete_webhook(hook.id)
    assert events_of(hook_app, job.id) == []


def test_big_batches_keep_their_webhook_url(hook_app: Conveyor) -> None:
    """Batches past the COPY threshold (PostgreSQL) take the path that stores webhook_url."""
    many = hook_app.enqueue_many("add", [{"a": i, "b": 0} for i in range(60)], webhook_url="https://example.com/a")
    mixed = hook_app.enqueue_batch(
        [{"type": "add", "args": {"a": i, "b": 0}, "webhook_url": f"https://example.com/{i}"} for i in range(60)]
    )
    hook_app.run_worker(concurrency=10, burst=True)
    store = subscriptions.store(hook_app)
    assert all([d.url for d in store.job_deliveries(j.id)] == ["https://example.com/a"] for j in many)
    assert all([d.url for d in store.job_deliveries(j.id)] == [f"https://example.com/{i}"] for i, j in enumerate(mixed))


def test_a_dependent_job_keeps_its_webhook_url(hook_app: Conveyor) -> None:
    parent = hook_app.enqueue("add", {"a": 1, "b": 1})
    child = hook_app.enqueue("add", {"a": 2, "b": 2}, depends_on=[parent.id], webhook_url="https://example.com/c")
    for _ in range(2):
        hook_app.run_worker(burst=True)
    assert hook_app.require_job(child.id).status == "completed"
    assert [(d.event, d.url) for d in subscriptions.store(hook_app).job_deliveries(child.id)] == [
        ("job.completed", "https://example.com/c")
    ]


def test_a_job_cancelled_at_enqueue_is_created_then_cancelled(hook_app: Conveyor) -> None:
    """Its parent failed before: the job is stored `cancelled` (no update ends it), and subscribers hear both."""
    subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/", events=["job.created", "job.cancelled"]))
    only_ends = subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:8/", events=["job.cancelled"]))
    parent = hook_app.enqueue("boom", {})
    hook_app.run_worker(burst=True)
    child = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[parent.id])
    assert hook_app.require_job(child.id).status == "cancelled"
    assert events_of(hook_app, child.id) == ["job.created", "job.cancelled", "job.cancelled"]
    ends = [d for d in subscriptions.store(hook_app).job_deliveries(child.id) if d.webhook_id == only_ends.id]
    assert [d.event for d in ends] == ["job.cancelled"]
