"""The values of webhooks: a subscription, a change to one, a delivery (as listed, and as claimed for sending)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.job import iso, to_datetime

JOB_EVENTS = (
    "job.created",
    "job.started",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.retrying",
    "job.cancelled",
)
# Workflow events (SPEC section 7): a workflow that ended, `workflow.<its status>`, written by a trigger on the
# workflows table (payload: the workflow's row, job_id NULL). A workflow cancelled as a whole ends `cancelled`, an
# event the SPEC does not list: adding "workflow.cancelled" here is all it would take.
WORKFLOW_EVENTS = ("workflow.completed", "workflow.failed")
EVENTS = JOB_EVENTS + WORKFLOW_EVENTS
TERMINAL_EVENTS = ("job.completed", "job.failed", "job.cancelled")  # what a job's own webhook_url gets
TEST_EVENT = "webhook.test"


class WebhookNotFoundError(ConveyorError):
    """No webhook subscription has that id."""

    code = "not_found"

    def __init__(self, webhook_id: str) -> None:
        self.webhook_id = webhook_id
        super().__init__(f"webhook {webhook_id} not found")


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]
    filter_type: str | None
    filter_queue: str | None
    filter_tag: str | None
    paused: bool
    paused_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime
    secret: str  # shown once, at creation (`to_dict(secret=True)`)

    def to_dict(self, *, secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "filter": {"type": self.filter_type, "queue": self.filter_queue, "tag": self.filter_tag},
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "failing_since": iso(self.failing_since),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
        if secret:
            out["secret"] = self.secret
        return out


@dataclass(frozen=True, slots=True)
class NewWebhook:
    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    filter_type: str | None = None
    filter_queue: str | None = None
    filter_tag: str | None = None
    paused: bool = False


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """A PATCH: None leaves a field as it is; a filter field set to "" clears it."""

    id: str
    events: tuple[str, ...] | None = None
    filter_type: str | None = None
    filter_queue: str | None = None
    filter_tag: str | None = None
    paused: bool | None = None
    paused_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    webhook_id: str | None
    url: str | None  # a job's own webhook_url (None for a subscription's delivery)
    event: str
    job_id: str | None
    attempt: int
    status: str  # pending, delivered, failed
    status_code: int | None
    error: str | None
    created_at: datetime
    attempted_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    history: tuple[dict[str, Any], ...] = ()  # every attempt (at, attempt, status_code, error), once one failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "url": self.url,
            "event": self.event,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "status": self.status,
            "status_code": self.status_code,
            "error": self.error,
            "at": iso(self.attempted_at or self.created_at),
            "created_at": iso(self.created_at),
            "delivered_at": iso(self.delivered_at),
            "next_attempt_at": iso(self.next_attempt_at) if self.status == "pending" else None,
            "attempts": [{**a, "at": iso(to_datetime(a["at"]))} for a in self.history],
        }


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a sender holds (its lease: `next_attempt_at` pushed ahead) for attempt number `attempt`."""

    id: int
    webhook_id: str | None
    url: str | None
    event: str
    job_id: str | None
    payload: dict[str, Any]  # the job's row at the time of the event
    attempt: int
    created_at: float

    @property
    def target(self) -> str:
        """The endpoint key: one subscription, or one per-job URL (per-endpoint concurrency, order per job)."""
        return self.webhook_id or self.url or ""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt gave: `status_code` (None: no answer), `error` (None: delivered)."""

    delivery: ClaimedDelivery
    status_code: int | None
    error: str | None
    final: bool = False  # no retry (a refused address)

    @property
    def ok(self) -> bool:
        return self.error is None
