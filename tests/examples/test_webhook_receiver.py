"""examples/webhook_receiver: a worker process delivers a job's completion to the example's receiver, which verifies
the signature; a delivery signed with another secret is refused (401) and not printed."""

from __future__ import annotations

import sys
import time

import httpx

from conveyor import Conveyor
from conveyor.settings import Settings
from conveyor.webhooks import subscriptions
from conveyor.webhooks.signing import new_secret, signed_headers
from conveyor.webhooks.subscriptions import WebhookSpec
from tests.conftest import wait_for
from tests.examples.conftest import Processes


def test_the_receiver_verifies_and_prints_deliveries(processes: Processes) -> None:
    secret = new_secret()
    processes.env.update(WEBHOOK_SECRET=secret, CONVEYOR_WEBHOOK_ALLOW_PRIVATE="true")
    base = processes.server("webhook_receiver", sys.executable, "receiver.py", "--port", "{port}")
    receiver = processes.started[-1][0]
    app = Conveyor(processes.env["CONVEYOR_DATABASE_URL"], settings=Settings(webhook_allow_private=True))
    try:
        subscriptions.create(app, WebhookSpec(url=f"{base}/hook", events=["job.completed"], secret=secret))
        job = app.enqueue("demo.echo", {"hello": "world"})
    finally:
        app.close()
    processes.start("webhook_receiver", sys.executable, "-m", "conveyor", "worker", "--processes", "0")
    wait_for(lambda: f"job.completed {job.id} completed" in processes.output(receiver), timeout=30,
             what="the receiver to print the delivery")
    body = '{"type": "job.completed", "timestamp": "2026-01-01T00:00:00Z", "data": {}}'
    forged = httpx.post(f"{base}/hook", content=body, headers=signed_headers(new_secret(), "msg_x", body, time.time()))
    assert forged.status_code == 401
    # the receiver answers, then prints: wait for the line
    wait_for(lambda: "refused" in processes.output(receiver), timeout=10, what="the receiver to print the refusal")
