"""The Webhooks page in a real browser: subscriptions with their recent deliveries and status codes, pause and resume,
a form that subscribes (the secret shown once) and refuses a private address (422, nothing stored)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.ids import uuid7
from conveyor.webhooks import subscriptions
from conveyor.webhooks.model import NewWebhook
from conveyor.webhooks.service import WebhookSender
from conveyor.webhooks.signing import new_secret
from tests.dashboard.conftest import Server
from tests.webhooks.receiver import Receiver, serve_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


def test_webhooks_page(server: Server, page: Any, receiver: Receiver, artifacts: Path) -> None:
    app = server.conveyor
    store = subscriptions.store(app)
    # the server refuses loopback URLs: this one is stored directly, and sent by a sender that allows them
    hook = store.create_webhook(NewWebhook(uuid7(), receiver.url, ("job.completed",), new_secret()), app.clock())
    receiver.script = [500]
    for _ in range(2):
        server.enqueue("demo.echo", {"n": 1})
    sender = WebhookSender(store, app.settings.with_changes(webhook_allow_private=True), app.clock)

    async def send() -> None:
        await sender.run_once()
        await sender.close()

    def work() -> None:  # in a thread: the browser's event loop runs in this one
        app.run_worker(burst=True)
        asyncio.run(send())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)

    page.goto(f"{server.url}/ui/webhooks")
    assert page.get_by_role("link", name="Webhooks").count() == 1
    card = page.locator(f'[data-webhook-id="{hook.id}"]')
    assert sorted(card.locator("[data-status-code]").all_inner_texts()) == ["200", "500"]
    assert "HTTP 500" in card.inner_text()
    card.get_by_role("button", name="Pause").click()
    page.locator(f'[data-webhook-id="{hook.id}"] .badge', has_text="paused").wait_for()
    assert store.get_webhook(hook.id).paused
    page.locator(f'[data-webhook-id="{hook.id}"]').get_by_role("button", name="Resume").click()
    page.locator(f'[data-webhook-id="{hook.id}"] .badge', has_text="active").wait_for()

    form = page.locator('form[action="/ui/webhooks"]')
    form.get_by_label("URL").fill("http://169.254.169.254/latest")
    form.get_by_role("button", name="Subscribe").click()
    assert "CONVEYOR_WEBHOOK_ALLOW_PRIVATE" in page.get_by_role("alert").inner_text()
    assert len(store.list_webhooks()) == 1

    form = page.locator('form[action="/ui/webhooks"]')
    form.get_by_label("URL").fill("https://93.184.216.34/hook")
    form.get_by_label("Only the queue").fill("mail")
    form.get_by_role("button", name="Subscribe").click()
    secret = page.locator("[data-secret]").inner_text()
    assert secret.startswith("whsec_")
    created = next(w for w in store.list_webhooks() if w.id != hook.id)
    assert (created.secret, created.filter_queue, created.events) == (secret, "mail", ("job.completed", "job.failed"))
    page.screenshot(path=str(artifacts / "webhooks.png"), full_page=True)
    page.goto(f"{server.url}/ui/webhooks")
    assert page.locator("[data-secret]").count() == 0  # shown once
