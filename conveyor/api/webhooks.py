"""The `/webhooks` routes of SPEC section 7: subscriptions (the secret shown once, at creation), their deliveries,
and a test delivery sent at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from conveyor.api.errors import ApiError, ErrorRoute
from conveyor.api.models import ERRORS as ERRORS_DOC
from conveyor.webhooks import WebhookNotFoundError
from conveyor.webhooks import subscriptions as subs
from conveyor.webhooks.subscriptions import WebhookPatch, WebhookSpec

if TYPE_CHECKING:
    from conveyor.app import Conveyor

T = TypeVar("T")
WebhookId = Annotated[str, Path(min_length=1, max_length=200, description="the subscription's id")]
MAX_DELIVERIES = 1000


class WebhookFilterOut(BaseModel):
    type: str | None
    queue: str | None
    tag: str | None


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    filter: WebhookFilterOut
    paused: bool
    paused_reason: str | None
    failing_since: str | None
    created_at: str
    updated_at: str
    secret: str | None = None  # only in the answer to POST /webhooks


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class JobSecretOut(BaseModel):
    secret: str
    source: str  # CONVEYOR_WEBHOOK_SECRET, or generated (stored in the database)


class AttemptOut(BaseModel):
    at: str
    attempt: int
    status_code: int | None
    error: str | None


class DeliveryOut(BaseModel):
    id: int
    event: str
    job_id: str | None
    attempt: int
    status: str
    status_code: int | None
    error: str | None
    at: str
    attempts: list[AttemptOut]  # every attempt, once one failed (empty when the first succeeded)


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


def _found(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except WebhookNotFoundError as exc:
        raise ApiError(404, exc.message) from None


def create_webhook_router(conveyor: Conveyor) -> APIRouter:
    router = APIRouter(route_class=ErrorRoute, responses=ERRORS_DOC, tags=["webhooks"])

    @router.get("/webhooks", response_model=WebhookList, summary="List webhook subscriptions")
    def list_webhooks() -> dict[str, Any]:
        return {"webhooks": [w.to_dict() for w in subs.store(conveyor).list_webhooks()]}

    @router.post("/webhooks", status_code=201, response_model=WebhookOut, summary="Subscribe")
    def create_webhook(body: WebhookSpec) -> Response:
        """201 and the subscription with its `secret` (generated when not given): shown this once. A URL to a
        loopback or private address is refused (422) unless CONVEYOR_WEBHOOK_ALLOW_PRIVATE=true."""
        webhook = subs.create(conveyor, body)
        return JSONResponse(webhook.to_dict(secret=True), status_code=201)

    # before /webhooks/{webhook_id}, which would take the path as an id
    @router.get("/webhooks/job-secret", response_model=JobSecretOut, summary="The secret of jobs' own webhook_url")
    def job_secret() -> dict[str, Any]:
        """The Standard Webhooks secret that signs deliveries to jobs' own `webhook_url`: CONVEYOR_WEBHOOK_SECRET
        when set, else one the server generated and stored in the database, the same for every process."""
        secret, source = subs.job_secret(conveyor)
        return {"secret": secret, "source": source}

    @router.get("/webhooks/{webhook_id}", response_model=WebhookOut, summary="One subscription")
    def get_webhook(webhook_id: WebhookId) -> dict[str, Any]:
        return _found(lambda: subs.store(conveyor).get_webhook(webhook_id)).to_dict()

    @router.patch("/webhooks/{webhook_id}", response_model=WebhookOut, summary="Pause, resume, change events or filter")
    def patch_webhook(webhook_id: WebhookId, body: WebhookPatch) -> dict[str, Any]:
        return _found(lambda: subs.change(conveyor, webhook_id, body)).to_dict()

    @router.delete("/webhooks/{webhook_id}", status_code=204, summary="Unsubscribe")
    def delete_webhook(webhook_id: WebhookId) -> Response:
        _found(lambda: subs.store(conveyor).delete_webhook(webhook_id))
        return Response(status_code=204)

    @router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryList, summary="Recent deliveries")
    def deliveries(
        webhook_id: WebhookId,
        limit: Annotated[int, Query(ge=1, le=MAX_DELIVERIES)] = 50,
        before: Annotated[int | None, Query(ge=1, description="older than this delivery id")] = None,
    ) -> dict[str, Any]:
        """Newest first: each delivery's event, job, attempt count and its last attempt's status code or error."""
        found = _found(lambda: subs.store(conveyor).webhook_deliveries(webhook_id, limit, before))
        return {"deliveries": [d.to_dict() for d in found]}

    @router.post("/webhooks/{webhook_id}/test", summary="Send a test delivery now")
    async def test_webhook(webhook_id: WebhookId) -> dict[str, Any]:
        """POSTs a signed `webhook.test` event at once and answers with its outcome (it is logged, not retried)."""
        try:
            return await subs.send_test(conveyor, webhook_id)
        except WebhookNotFoundError as exc:
            raise ApiError(404, exc.message) from None

    return router
