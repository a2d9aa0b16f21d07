"""Delivery under faults, on both backends: an endpoint that fails in every way, then answers; one that is down while
hundreds of jobs complete; two senders on one database; a slow endpoint beside a fast one."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from conveyor import Conveyor
from conveyor.webhooks import subscriptions
from conveyor.webhooks.service import WebhookSender
from conveyor.webhooks.subscriptions import WebhookSpec
from tests.webhooks.receiver import Receiver, drain, serve_receiver


def subscribe(app: Conveyor, url: str, events: list[str]) -> Any:
    return subscriptions.create(app, WebhookSpec(url=url, events=events))


def sender(app: Conveyor, clock: Callable[[], float] | None = None) -> WebhookSender:
    return WebhookSender(subscriptions.store(app), app.settings, clock or app.clock)


def test_500_then_time_out_then_closed_then_200(hook_app: Conveyor, receiver: Receiver) -> None:
    subscribe(hook_app, receiver.url, ["job.completed"])
    receiver.script = [500, "hang", "close", 200]
    job = hook_app.enqueue("add", {"a": 1, "b": 2})
    hook_app.run_worker(burst=True)
    now = [time.time()]
    errors = []
    for _ in range(4):
        drain(hook_app, lambda: now[0])
        [row] = subscriptions.store(hook_app).job_deliveries(job.id)
        errors.append((row.attempt, row.status, row.status_code, row.error))
        now[0] += 3600.0
    assert errors[0] == (1, "pending", 500, "HTTP 500")
    assert errors[1][:3] == (2, "pending", None) and "timed out" in (errors[1][3] or "")
    assert errors[2][:3] == (3, "pending", None) and "RemoteProtocolError" in (errors[2][3] or "")
    assert errors[3] == (4, "delivered", 200, None)
    assert len(receiver.requests) == 4
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # one message, four attempts
    [row] = subscriptions.store(hook_app).job_deliveries(job.id)
    logged = [(a["attempt"], a["status_code"], a["error"] is None) for a in row.to_dict()["attempts"]]
    assert logged == [(1, 500, False), (2, None, False), (3, None, False), (4, 200, True)]  # each attempt logged


def test_an_endpoint_down_while_jobs_complete_gets_them_all_in_order(hook_app: Conveyor, receiver: Receiver) -> None:
    subscribe(hook_app, receiver.url, ["job.created", "job.completed"])
    receiver.default = 503
    jobs = hook_app.enqueue_many("add", [{"a": i, "b": 0} for i in range(500)])
    hook_app.run_worker(concurrency=50, burst=True)
    now = [time.time()]
    drain(hook_app, lambda: now[0])  # every first attempt fails: 500 job.created, the job.completed wait behind them
    first = len(receiver.requests)  # 500, but for an attempt whose connection failed on a loaded machine
    store = subscriptions.store(hook_app)
    tried = [(d.event, d.attempt, d.status) for j in jobs for d in store.job_deliveries(j.id)]
    assert sorted(set(tried)) == [("job.completed", 0, "pending"), ("job.created", 1, "pending")], set(tried)
    assert 0 < first <= 500
    receiver.default = 200
    now[0] += 3600.0
    drain(hook_app, lambda: now[0])
    delivered = [r.json for r in receiver.requests[first:]]
    assert len(delivered) == 1000
    seen: dict[str, list[str]] = defaultdict(list)
    for body in delivered:
        seen[body["data"]["id"]].append(body["type"])
    assert seen == {j.id: ["job.created", "job.completed"] for j in jobs}


def test_two_senders_never_send_one_delivery_twice(hook_app: Conveyor, receiver: Receiver) -> None:
    subscribe(hook_app, receiver.url, ["job.created", "job.started", "job.completed"])
    jobs = hook_app.enqueue_many("add", [{"a": i, "b": 0} for i in range(100)])
    hook_app.run_worker(concurrency=20, burst=True)
    other = Conveyor(hook_app.database_url, settings=hook_app.settings)  # another process's connections
    try:
        first, second = sender(hook_app), sender(other)

        async def both() -> list[int]:
            try:
                return list(await asyncio.gather(first.drain(120), second.drain(120)))
            finally:
                await first.close()
                await second.close()

        counts = asyncio.run(both())
    finally:
        other.close()
    assert sum(counts) == 300
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 300
    seen: dict[str, list[str]] = defaultdict(list)
    for body in receiver.bodies():
        seen[body["data"]["id"]].append(body["type"])
    assert seen == {j.id: ["job.created", "job.started", "job.completed"] for j in jobs}


def test_a_slow_endpoint_does_not_hold_back_the_others(hook_app: Conveyor, receiver: Receiver) -> None:
    with serve_receiver() as slow:
        slow.default = "hang"  # type: ignore[assignment]
        subscribe(hook_app, slow.url, ["job.completed"])
        subscribe(hook_app, receiver.url, ["job.completed"])
        hook_app.enqueue_many("add", [{"a": i, "b": 0} for i in range(30)])
        hook_app.run_worker(concurrency=10, burst=True)
        loop_sender = sender(hook_app)

        async def go() -> float:
            task = asyncio.create_task(loop_sender.run())
            started = time.monotonic()
            try:
                while len(receiver.requests) < 30:
                    assert time.monotonic() - started < 8.0, "the fast endpoint waited for the slow one"
                    await asyncio.sleep(0.05)
                return time.monotonic() - started
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        took = asyncio.run(go())
        assert took < 8.0
        assert len(slow.requests) <= 8  # at most PER_ENDPOINT in flight to the slow one
