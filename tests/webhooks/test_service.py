"""Webhook delivery end to end on both backends: the outbox rows the database writes with each job change, and the
sender that POSTs them to a real local receiver, signed (verified with the standardwebhooks library)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from conveyor import Conveyor
from conveyor.webhooks import subscriptions
from conveyor.webhooks.service import RETRY_FOR_S, WebhookSender, backoff_s
from conveyor.webhooks.subscriptions import WebhookSpec
from tests.webhooks.receiver import Receiver, drain


def subscribe(app: Conveyor, url: str, events: list[str], **extra: Any) -> Any:
    return subscriptions.create(app, WebhookSpec(url=url, events=events, **extra))


def test_outbox_rows_are_written_with_the_job_changes(hook_app: Conveyor, receiver: Receiver) -> None:
    hook = subscribe(hook_app, receiver.url, ["job.created", "job.started", "job.completed"])
    job = hook_app.enqueue("add", {"a": 1, "b": 2})
    hook_app.run_worker(burst=True)
    rows = subscriptions.store(hook_app).job_deliveries(job.id)
    assert [(d.event, d.webhook_id) for d in rows] == [
        ("job.created", hook.id), ("job.started", hook.id), ("job.completed", hook.id)
    ]


def test_delivery_on_completion_is_signed_and_in_order(hook_app: Conveyor, receiver: Receiver) -> None:
    hook = subscribe(hook_app, receiver.url, ["job.created", "job.started", "job.completed"])
    assert hook.secret.startswith("whsec_")
    jobs = [hook_app.enqueue("add", {"a": i, "b": 1}) for i in range(5)]
    hook_app.run_worker(burst=True)
    drain(hook_app)
    verifier = Verifier(hook.secret)
    for r in receiver.requests:
        verifier.verify(r.body, r.headers)  # raises if the signature is wrong
        assert r.headers["webhook-signature"].startswith("v1,")
    bodies = receiver.bodies()
    assert len(bodies) == 15
    for job in jobs:
        events = [b["type"] for b in bodies if b["data"]["id"] == job.id]
        assert events == ["job.created", "job.started", "job.completed"]
    done = next(b for b in bodies if b["type"] == "job.completed" and b["data"]["id"] == jobs[0].id)
    assert done["data"]["status"] == "completed"
    assert done["data"]["result"] == 1
    assert done["timestamp"].endswith("Z")
    started = next(b for b in bodies if b["type"] == "job.started" and b["data"]["id"] == jobs[0].id)
    assert started["data"]["status"] == "processing"  # the job as it was at the event


def test_filter_and_failed_event(hook_app: Conveyor, receiver: Receiver) -> None:
    subscribe(hook_app, receiver.url, ["job.failed", "job.completed"], filter={"type": "boom"})
    hook_app.enqueue("add", {"a": 1, "b": 2})
    failing = hook_app.enqueue("boom", {})
    hook_app.run_worker(burst=True)
    drain(hook_app)
    bodies = receiver.bodies()
    assert [(b["type"], b["data"]["id"]) for b in bodies] == [("job.failed", failing.id)]
    assert bodies[0]["data"]["error"]


def test_retry_after_a_500_then_success(hook_app: Conveyor, receiver: Receiver) -> None:
    subscribe(hook_app, receiver.url, ["job.completed"])
    receiver.script = [500]
    job = hook_app.enqueue("add", {"a": 1, "b": 2})
    hook_app.run_worker(burst=True)
    now = [hook_app.clock()]
    assert drain(hook_app, lambda: now[0]) == 1
    [row] = subscriptions.store(hook_app).job_deliveries(job.id)
    assert (row.status, row.attempt, row.status_code, row.error) == ("pending", 1, 500, "HTTP 500")
    assert row.next_attempt_at is not None
    wait = row.next_attempt_at.timestamp() - now[0]
    assert 2.0 <= wait <= 10.0  # the first retry within 10 s
    now[0] += 10.0
    assert drain(hook_app, lambda: now[0]) == 1
    [row] = subscriptions.store(hook_app).job_deliveries(job.id)
    assert (row.status, row.attempt, row.status_code, row.error) == ("delivered", 2, 200, None)
    assert [b["type"] for b in receiver.bodies()] == ["job.completed", "job.completed"]


def test_in_order_per_job_when_an_earlier_delivery_fails(hook_app: Conveyor, receiver: Receiver) -> None:
    subscribe(hook_app, receiver.url, ["job.created", "job.completed"])
    receiver.script = [503]
    job = hook_app.enqueue("add", {"a": 1, "b": 2})
    hook_app.run_worker(burst=True)
    now = [hook_app.clock()]
    drain(hook_app, lambda: now[0])  # created fails; completed must wait for it
    assert [b["type"] for b in receiver.bodies()] == ["job.created"]
    now[0] += 10.0
    drain(hook_app, lambda: now[0])
    assert [b["type"] for b in receiver.bodies()] == ["job.created", "job.created", "job.completed"]
    assert {d.status for d in subscriptions.store(hook_app).job_deliveries(job.id)} == {"delivered"}


def test_the_outbox_survives_a_crash(db_url: str, hook_settings: Any, receiver: Receiver) -> None:
    """The delivery row commits with the job change; a sender started later (another process) sends it."""
    first = Conveyor(db_url, settings=hook_settings)
    first.task(name="add")(lambda a, b: a + b)
    subscribe(first, receiver.url, ["job.completed"])
    job = first.enqueue("add", {"a": 1, "b": 2})
    first.run_worker(burst=True)
    first.close()  # nothing was sent: the process "died" after the change
    assert receiver.requests == []
    later = Conveyor(db_url, settings=hook_settings)
    try:
        assert drain(later) == 1
    finally:
        later.close()
    assert [(b["type"], b["data"]["id"]) for b in receiver.bodies()] == [("job.completed", job.id)]


def test_a_subscription_failing_for_24_hours_is_paused(hook_app: Conveyor, receiver: Receiver) -> None:
    hook = subscribe(hook_app, receiver.url, ["job.completed"])
    receiver.default = 500
    hook_app.enqueue("add", {"a": 1, "b": 2})
    hook_app.run_worker(burst=True)
    now = [hook_app.clock()]
    drain(hook_app, lambda: now[0])
    store = subscriptions.store(hook_app)
    assert store.get_webhook(hook.id).failing_since is not None
    assert not store.get_webhook(hook.id).paused
    now[0] += 24 * 3600 + 1
    drain(hook_app, lambda: now[0])
    paused = store.get_webhook(hook.id)
    assert paused.paused
    assert "failing for 24 hours" in (paused.paused_reason or "") and "HTTP 500" in (paused.paused_reason or "")
    [row] = store.webhook_deliveries(hook.id)
    assert row.status == "failed"  # retried for 24 hours, then given up
    # resumed: the streak is forgotten
    resumed = subscriptions.change(hook_app, hook.id, subscriptions.WebhookPatch(paused=False))
    assert not resumed.paused and resumed.failing_since is None


def test_backoff_grows_with_jitter_and_retries_last_a_day() -> None:
    assert 2.5 <= backoff_s(1) <= 5.0
    assert backoff_s(1, lambda: 0.0) == 2.5 and backoff_s(1, lambda: 1.0) == 5.0
    assert backoff_s(3, lambda: 1.0) == 20.0
    assert backoff_s(40, lambda: 1.0) == 3600.0
    assert RETRY_FOR_S >= 24 * 3600


SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


def test_per_job_webhook_url_gets_the_terminal_event(db_url: str, hook_settings: Any, receiver: Receiver) -> None:
    secret = SECRET
    settings = hook_settings.with_changes(webhook_secret=secret)
    app = Conveyor(db_url, settings=settings)
    app.task(name="add")(lambda a, b: a + b)
    try:
        job = app.enqueue("add", {"a": 2, "b": 3}, webhook_url=receiver.url + "?job=1")
        other = app.enqueue("add", {"a": 2, "b": 3})
        app.run_worker(burst=True)
        assert drain(app) == 1
        [r] = receiver.requests
        Verifier(secret).verify(r.body, r.headers)
        assert r.path == "/hook?job=1"
        assert (r.json["type"], r.json["data"]["id"], r.json["data"]["result"]) == ("job.completed", job.id, 5)
        assert r.json["data"]["webhook_url"] == receiver.url + "?job=1"
        stored = app.require_job(job.id).to_dict()
        assert r.json["data"].keys() == stored.keys()  # the job JSON, whole (times may differ in the last digit)
        assert {k: v for k, v in r.json["data"].items() if not k.endswith("_at")} == {
            k: v for k, v in stored.items() if not k.endswith("_at")}
        assert subscriptions.store(app).job_deliveries(other.id) == []
    finally:
        app.close()


def test_refused_address_at_send_time_fails_for_good(hook_app: Conveyor, receiver: Receiver) -> None:
    """Stored while private addresses were allowed, sent by a worker that refuses them: checked again at send time."""
    job = hook_app.enqueue("add", {"a": 2, "b": 3}, webhook_url=receiver.url)
    hook_app.run_worker(burst=True)
    strict = hook_app.settings.with_changes(webhook_allow_private=False)
    sender = WebhookSender(subscriptions.store(hook_app), strict, hook_app.clock)

    async def go() -> None:
        await sender.drain()
        await sender.close()

    asyncio.run(go())
    [row] = subscriptions.store(hook_app).job_deliveries(job.id)
    assert row.status == "failed"
    assert "loopback" in (row.error or "")
    assert receiver.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://169.254.169.254/latest", "http://10.1.2.3/",
                                 "http://localhost:8000/", "http://[::1]/", "http://[::ffff:127.0.0.1]/"])
def test_ssrf_refused_at_subscription(hook_app: Conveyor, url: str) -> None:
    from conveyor.errors import InvalidArgumentsError

    strict = Conveyor(hook_app.database_url, settings=hook_app.settings.with_changes(webhook_allow_private=False))
    try:
        with pytest.raises(InvalidArgumentsError, match=r"url: .*CONVEYOR_WEBHOOK_ALLOW_PRIVATE"):
            subscribe(strict, url, ["job.completed"])
        assert subscriptions.store(strict).list_webhooks() == []
    finally:
        strict.close()


def test_a_running_worker_sends_the_deliveries(hook_app: Conveyor, receiver: Receiver) -> None:
    import threading

    from conveyor.worker.runtime import Worker
    from tests.conftest import wait_for

    subscribe(hook_app, receiver.url, ["job.completed"])
    worker = Worker(hook_app, concurrency=2)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    thread.start()
    try:
        jobs = [hook_app.enqueue("add", {"a": i, "b": 0}) for i in range(3)]
        wait_for(lambda: len(receiver.requests) >= 3, timeout=20, what="three deliveries")
    finally:
        worker.stop()
        thread.join(10)
    assert sorted(b["data"]["id"] for b in receiver.bodies()) == sorted(j.id for j in jobs)


def test_per_job_webhook_url_to_a_private_address_is_refused_at_enqueue(db_url: str, hook_settings: Any) -> None:
    from conveyor.errors import InvalidArgumentsError

    app = Conveyor(db_url, settings=hook_settings.with_changes(webhook_allow_private=False))
    app.task(name="add")(lambda a, b: a + b)
    try:
        for url in ["http://127.0.0.1/", "http://169.254.169.254/", "http://localhost:9/x", "http://[::1]/"]:
            with pytest.raises(InvalidArgumentsError, match="webhook_url"):
                app.enqueue("add", {"a": 1, "b": 2}, webhook_url=url)
        assert app.list_jobs().jobs == []
        assert app.enqueue("add", {"a": 1, "b": 2}, webhook_url="https://hooks.example.com/x").id  # a name: at send
    finally:
        app.close()


def test_a_name_that_does_not_resolve_is_retried(db_url: str, hook_settings: Any) -> None:
    app = Conveyor(db_url, settings=hook_settings)
    app.task(name="add")(lambda a, b: a + b)
    try:
        job = app.enqueue("add", {"a": 2, "b": 3}, webhook_url="http://no-such-host.invalid/hook")
        app.run_worker(burst=True)
        drain(app)
        [row] = subscriptions.store(app).job_deliveries(job.id)
        assert row.status == "pending" and "cannot resolve" in (row.error or "")
    finally:
        app.close()


def test_the_payload_is_the_whole_job(hook_app: Conveyor, receiver: Receiver) -> None:
    """`data` has every field of the job JSON at the event: a dependent job's parents, its workflow and step, its
    group key and webhook_url, from its creation on (the parents' edges are written before the job)."""
    subscribe(hook_app, receiver.url, ["job.created"])
    parent = hook_app.enqueue("add", {"a": 1, "b": 1})
    child = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[parent.id], group_key="tenant:1",
                             webhook_url="https://example.com/child")
    wf = hook_app.workflow("wf")
    first = wf.step("first", "add", a=1, b=1)
    wf.step("second", "add", a=1, b=1, after=[first])
    run = wf.enqueue()
    drain(hook_app)
    data = {b["data"]["id"]: b["data"] for b in receiver.bodies()}
    assert data[child.id].keys() == hook_app.require_job(child.id).to_dict().keys()
    assert (data[child.id]["depends_on"], data[child.id]["group_key"], data[child.id]["webhook_url"]) == (
        [parent.id], "tenant:1", "https://example.com/child")
    second = run.step("second")
    assert (data[second.id]["workflow_id"], data[second.id]["step"], data[second.id]["depends_on"]) == (
        run.id, "second", [run.step("first").id])


def test_per_job_webhook_url_is_signed_with_a_generated_secret(db_url: str, hook_settings: Any,
                                                                receiver: Receiver) -> None:
    """Without CONVEYOR_WEBHOOK_SECRET: a secret the first process generates and stores, the same for every process
    and after a restart, shown by `subscriptions.job_secret` (REST GET /webhooks/job-secret, the CLI)."""
    assert hook_settings.webhook_secret is None
    first, second = Conveyor(db_url, settings=hook_settings), Conveyor(db_url, settings=hook_settings)
    for app in (first, second):
        app.task(name="add")(lambda a, b: a + b)
    try:
        one = first.enqueue("add", {"a": 1, "b": 1}, webhook_url=receiver.url + "?n=1")
        first.run_worker(burst=True)
        assert drain(first) == 1  # this sender generates and stores the secret
        two = second.enqueue("add", {"a": 2, "b": 2}, webhook_url=receiver.url + "?n=2")
        second.run_worker(burst=True)
        assert drain(second) == 1  # another process: the stored one
        secret, source = subscriptions.job_secret(second)
        assert (secret.startswith("whsec_"), source) == (True, "generated")
        assert subscriptions.job_secret(first) == (secret, source)
        verifier = Verifier(secret)
        assert [verifier.verify(r.body, r.headers)["data"]["id"] for r in receiver.requests] == [one.id, two.id]
    finally:
        first.close()
        second.close()
    reopened = Conveyor(db_url, settings=hook_settings)
    try:
        assert subscriptions.job_secret(reopened) == (secret, "generated")
        configured = Conveyor(db_url, settings=hook_settings.with_changes(webhook_secret=SECRET))
        assert subscriptions.job_secret(configured) == (SECRET, "CONVEYOR_WEBHOOK_SECRET")  # the setting wins
        configured.close()
    finally:
        reopened.close()


def test_processes_racing_to_store_the_job_secret_agree(db_url: str, hook_settings: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    apps = [Conveyor(db_url, settings=hook_settings) for _ in range(4)]
    try:
        store = [subscriptions.store(a) for a in apps]
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(lambda i: store[i].job_webhook_secret(f"whsec_candidate{i}", 0.0), range(4)))
        assert len(set(found)) == 1 and found[0] in {f"whsec_candidate{i}" for i in range(4)}
    finally:
        for a in apps:
            a.close()


def test_results_written_together_keep_their_order_for_the_failure_streak(hook_app: Conveyor) -> None:
    """One write settles many results (the delivered ones in one statement); a subscription's streak still follows
    their order: a success then a failure starts a streak, a failure then a success ends it."""
    from conveyor.webhooks.model import AttemptResult

    hook = subscribe(hook_app, "http://127.0.0.1:9/", ["job.created"])
    store = subscriptions.store(hook_app)
    for order in ([True, False], [False, True]):
        for _ in order:
            hook_app.enqueue("add", {"a": 1, "b": 1})
        now = hook_app.clock()
        claimed = store.claim_deliveries(10, now, now + 60)
        assert len(claimed) == 2
        results = [AttemptResult(d, 200 if ok else 500, None if ok else "HTTP 500")
                   for d, ok in zip(claimed, order, strict=True)]
        assert store.settle_deliveries(results, now, [None if ok else now + 5 for ok in order], now - 86400) == []
        failing = store.get_webhook(hook.id).failing_since
        assert (failing is not None) == (order == [True, False])
        statuses = {d.id: d.status for d in store.webhook_deliveries(hook.id)}
        assert [statuses[d.id] for d in claimed] == ["delivered" if ok else "pending" for ok in order]
