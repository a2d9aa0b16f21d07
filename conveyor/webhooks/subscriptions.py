"""Managing subscriptions, as the REST API and the CLI do: validated specs (refused with a message naming the field,
nothing stored), a secret generated when none is given, and a test delivery sent at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conveyor.backends.webhooks import WebhookOps
from conveyor.errors import ConfigError, InvalidArgumentsError
from conveyor.ids import uuid7
from conveyor.options import MAX_NAME, MAX_URL, options_error
from conveyor.webhooks.model import (
    EVENTS,
    TEST_EVENT,
    AttemptResult,
    ClaimedDelivery,
    NewWebhook,
    Webhook,
    WebhookChange,
)
from conveyor.webhooks.service import WebhookSender
from conveyor.webhooks.signing import new_secret, secret_problem
from conveyor.webhooks.urls import check_url

if TYPE_CHECKING:
    from conveyor.app import Conveyor

FilterValue = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
# where the secret of jobs' own webhook_url comes from (names, not secrets)
FROM_SETTINGS = "CONVEYOR_WEBHOOK_SECRET"
GENERATED = "generated"


class WebhookFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: FilterValue | None = None
    queue: FilterValue | None = None
    tag: FilterValue | None = None


def _check_events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("give at least one event")
    unknown = [e for e in value if e not in EVENTS]
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}; events are {', '.join(EVENTS)}")
    return list(dict.fromkeys(value))


class WebhookSpec(BaseModel):
    """`POST /webhooks`: a URL, the events it wants, an optional filter and secret."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_URL)
    events: list[str] = Field(min_length=1, max_length=len(EVENTS))
    filter: WebhookFilter = Field(default_factory=WebhookFilter)
    secret: str | None = Field(default=None, max_length=200, description="whsec_...; generated when not given")
    paused: bool = False

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str] | None:
        return _check_events(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        problem = value and secret_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class WebhookPatch(BaseModel):
    """`PATCH /webhooks/{id}`: pause or resume, the events, the filter (a filter field of null clears it)."""

    model_config = ConfigDict(extra="forbid")

    paused: bool | None = None
    events: list[str] | None = Field(default=None, max_length=len(EVENTS))
    filter: WebhookFilter | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return _check_events(value)


def parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgumentsError(options_error(exc)) from None


def store(app: Conveyor) -> WebhookOps:
    backend = app.backend
    if not isinstance(backend, WebhookOps):
        raise ConfigError(f"the {backend.dialect} backend has no webhooks")
    return backend


def create(app: Conveyor, spec: WebhookSpec) -> Webhook:
    """Store a subscription (its secret in the result: shown once). The URL is checked after DNS resolution."""
    check_url(spec.url, app.settings.webhook_allow_private)
    new = NewWebhook(
        id=uuid7(),
        url=spec.url,
        events=tuple(spec.events),
        secret=spec.secret or new_secret(),
        filter_type=spec.filter.type,
        filter_queue=spec.filter.queue,
        filter_tag=spec.filter.tag,
        paused=spec.paused,
    )
    return store(app).create_webhook(new, app.clock())


def change(app: Conveyor, webhook_id: str, patch: WebhookPatch) -> Webhook:
    given = patch.filter.model_fields_set if patch.filter is not None else set()
    flt = patch.filter or WebhookFilter()

    def field(name: str) -> str | None:
        return (getattr(flt, name) or "") if name in given else None  # "": clear it

    reason = None if patch.paused is None else ("paused by hand" if patch.paused else None)
    update = WebhookChange(
        id=webhook_id,
        events=tuple(patch.events) if patch.events is not None else None,
        filter_type=field("type"),
        filter_queue=field("queue"),
        filter_tag=field("tag"),
        paused=patch.paused,
        paused_reason=reason,
    )
    return store(app).update_webhook(update, app.clock())


def job_secret(app: Conveyor) -> tuple[str, str]:
    """The secret that signs deliveries to jobs' own webhook_url, and where it comes from: CONVEYOR_WEBHOOK_SECRET
    when set, else the database's own, generated the first time a process needs it (every process then signs with
    that one, across restarts)."""
    if app.settings.webhook_secret:
        return app.settings.webhook_secret, FROM_SETTINGS
    return store(app).job_webhook_secret(new_secret(), app.clock()), GENERATED


async def send_test(app: Conveyor, webhook_id: str) -> dict[str, Any]:
    """POST a `webhook.test` event to the subscription now; the attempt is logged among its deliveries."""
    backend = store(app)
    webhook = await asyncio.to_thread(backend.get_webhook, webhook_id)
    now = app.clock()
    data = {"webhook_id": webhook.id, "message": "a test delivery from Conveyor"}
    delivery = ClaimedDelivery(0, webhook.id, None, TEST_EVENT, None, data, 1, now)
    sender = WebhookSender(backend, app.settings, app.clock)
    try:
        result: AttemptResult = await sender.attempt(delivery, webhook.url, webhook.secret)
    finally:
        await sender.close()
    await asyncio.to_thread(backend.record_delivery, webhook, TEST_EVENT, data, result, now)
    return {"event": TEST_EVENT, "ok": result.ok, "status_code": result.status_code, "error": result.error}
