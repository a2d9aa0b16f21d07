"""The Webhooks page: each subscription with its recent deliveries and their status codes; pause, resume, test and
delete it; a form to add one (its secret shown once, on the page that answers the form). The webhooks plugin adds it
(`conveyor.webhooks.plugin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import ConveyorError
from conveyor.webhooks import EVENTS, Delivery, Webhook
from conveyor.webhooks import subscriptions as subs
from conveyor.webhooks.subscriptions import WebhookPatch, WebhookSpec

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.dashboard import Dashboard

RECENT = 10  # deliveries shown per subscription
BACK = "/ui/webhooks"


def _overview(app: Conveyor) -> list[tuple[Webhook, list[Delivery]]]:
    store = subs.store(app)
    return [(w, store.webhook_deliveries(w.id, RECENT)) for w in store.list_webhooks()]


class WebhooksPage:
    nav_label = "Webhooks"
    nav_path = BACK

    def __init__(self) -> None:
        self._dashboard: Dashboard | None = None

    @property
    def dashboard(self) -> Dashboard:
        assert self._dashboard is not None, "add_routes binds the page to its dashboard"
        return self._dashboard

    def add_routes(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard
        r = dashboard.router
        r.add_api_route(BACK, self.page, methods=["GET"])
        r.add_api_route(BACK, self.add, methods=["POST"])
        r.add_api_route(BACK + "/{webhook_id}/{action}", self.act, methods=["POST"])

    async def page(self, request: Request) -> Response:
        if (gate := self.dashboard.auth.page_gate(request)) is not None:
            return gate
        return await self._render(request)

    async def _render(self, request: Request, status: int = 200, **extra: Any) -> Response:
        d = self.dashboard
        hooks = await d.call(_overview, d.conveyor)
        context: dict[str, Any] = {"created": None, "error": None, "form": None, **extra}
        return d.render(request, "webhooks.html", status_code=status, hooks=hooks, events=EVENTS, next_url=BACK,
                        **context)

    async def add(self, request: Request) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        body = await request.form()
        spec = {
            "url": form.get("url", "").strip(),
            "events": [str(e) for e in body.getlist("events")],
            "filter": {k: form.get(k, "").strip() or None for k in ("type", "queue", "tag")},
        }
        try:
            created = await d.call(subs.create, d.conveyor, subs.parse(WebhookSpec, spec))
        except ConveyorError as exc:
            if "application/json" in request.headers.get("accept", ""):
                return d.done(request, exc.message, BACK, ok=False, status=422)
            return await self._render(request, 422, error=exc.message, form=spec)
        if "application/json" in request.headers.get("accept", ""):
            return d.done(request, "Subscribed.", BACK, webhook=created.to_dict(secret=True))
        return await self._render(request, 201, created=created)

    async def act(self, request: Request, webhook_id: str, action: str) -> Response:
        d = self.dashboard
        refused, _ = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        app = d.conveyor
        try:
            if action in {"pause", "resume"}:
                await d.call(subs.change, app, webhook_id, WebhookPatch(paused=action == "pause"))
                message = "Paused." if action == "pause" else "Resumed."
            elif action == "delete":
                await d.call(subs.store(app).delete_webhook, webhook_id)
                message = "Subscription deleted."
            elif action == "test":
                result = await subs.send_test(app, webhook_id)
                ok = result["ok"]
                message = f"Test delivered ({result['status_code']})." if ok else f"Test failed: {result['error']}"
                return d.done(request, message, BACK, ok=ok, status=502, **result)
            else:
                return d.done(request, f"Unknown action {action!r}.", BACK, ok=False, status=404)
        except ConveyorError as exc:
            return d.done(request, exc.message, BACK, ok=False, status=404)
        return d.done(request, message, BACK)
