"""Webhooks (SPEC section 7): subscriptions to job events, and per-job `webhook_url`s, delivered durably.

The database writes a delivery row in the transaction of the job change (an outbox: triggers of the webhooks
migration), the workers send them (`service.WebhookSender`), signed by the Standard Webhooks scheme (`signing`).
"""

from __future__ import annotations

from conveyor.webhooks.model import EVENTS, Delivery, Webhook, WebhookChange, WebhookNotFoundError

__all__ = ["EVENTS", "Delivery", "Webhook", "WebhookChange", "WebhookNotFoundError"]
