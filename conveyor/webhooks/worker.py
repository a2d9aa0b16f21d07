"""What a worker runs of the webhooks: a sender (`service.WebhookSender`) beside its jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.backends.webhooks import WebhookOps

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.webhooks.service import WebhookSender


def sender_for(app: Conveyor, clock: Callable[[], float], burst: bool = False) -> list[WebhookSender]:
    """The sender a worker runs beside its jobs: none in a burst worker (it stops once the queue is empty, and a send
    cut short would only be sent again; a long-running worker sends what it left) or a backend without webhooks."""
    backend = app.backend
    if burst or not isinstance(backend, WebhookOps):
        return []
    from conveyor.webhooks.service import WebhookSender  # httpx (and with it rich): only when a worker starts

    return [WebhookSender(backend, app.settings, clock)]
