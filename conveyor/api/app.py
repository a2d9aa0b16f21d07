"""`create_app`: the whole HTTP service (API, health, metrics, docs, and the routes of each plugin: the dashboard, the
ingestion)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic.json_schema import models_json_schema

from conveyor import __version__
from conveyor.api.errors import ErrorRoute, error_response, install_error_handlers
from conveyor.api.events import EventHub
from conveyor.api.metrics import metrics_registry, render
from conveyor.api.middleware import BodyLimit, NoNulInUrl, TokenAuth
from conveyor.api.routes import create_router
from conveyor.api.workflow_routes import create_workflow_router
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.settings import Settings

log = logging.getLogger("conveyor.api")

API_PREFIX = "/api/v1"
# Swagger UI's files, served from the fastapi-offline package, so /docs works offline. No ReDoc: its page fetches a logo
# from its vendor's CDN, and Swagger UI covers the need.
DOCS_ASSETS = "/docs/static"
UPLOAD_OVERHEAD_BYTES = 1024 * 1024  # multipart framing and form fields around the file


def create_app(conveyor: Conveyor, *, settings: Settings | None = None, hub: EventHub | None = None) -> FastAPI:
    """The ASGI app of `conveyor serve`. `settings` defaults to the app's (the token, the upload limit)."""
    settings = settings or conveyor.settings
    events = hub or EventHub(conveyor)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await events.close()

    app = FastAPIOffline(
        title="Conveyor",
        summary="A durable background job system: enqueue, watch and steer jobs.",
        version=__version__,
        lifespan=lifespan,
        responses={},
        static_url=DOCS_ASSETS,
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the online validator
    )
    app.state.conveyor = conveyor
    app.state.hub = events
    install_error_handlers(app)
    app.include_router(create_router(conveyor, hub=events), prefix=API_PREFIX)
    app.include_router(create_workflow_router(conveyor), prefix=API_PREFIX)

    registry = metrics_registry(conveyor)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Database readiness")
    def readyz() -> Response:
        try:
            conveyor.backend.last_change_id()
        except ConveyorError as exc:
            return error_response(503, "unavailable", f"database not ready: {exc.message}")
        return JSONResponse({"status": "ready", "database": conveyor.backend.dialect})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    for plugin in conveyor.plugins:  # the ingestion's routes, the dashboard, a user's parts
        if plugin.router is not None:
            app.include_router(plugin.router(conveyor))

    app.openapi = lambda: _openapi(app, conveyor)  # type: ignore[method-assign]
    upload_limit = settings.max_upload_mb * 1024 * 1024 + UPLOAD_OVERHEAD_BYTES
    app.add_middleware(NoNulInUrl)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_mb * 1024 * 1024, max_upload_bytes=upload_limit)
    app.add_middleware(TokenAuth, token=settings.api_token)
    return app


def _openapi(app: FastAPI, conveyor: Conveyor) -> dict[str, Any]:
    """The generated schema, plus each registered task's argument schema: `POST /jobs` documents one body variant
    per task type (`type` fixed, `args` that task's model), so clients see exactly what each task accepts."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes, description=app.description
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    models = []
    for task in conveyor.tasks.values():
        with contextlib.suppress(Exception):  # a model whose types have no JSON schema stays undocumented
            task.args_model.model_json_schema()
            models.append(task)
    if models:
        refs, defs = models_json_schema(
            [(t.args_model, "validation") for t in models], ref_template="#/components/schemas/{model}"
        )
        components.update(defs.get("$defs", {}))
        variants = []
        for task in models:
            name = "Enqueue_" + re.sub(r"[^A-Za-z0-9_.-]", "_", task.name)
            components[name] = {
                "title": name,
                "allOf": [
                    {"$ref": "#/components/schemas/EnqueueRequest"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": task.name},
                            "args": refs[(task.args_model, "validation")],
                        },
                    },
                ],
            }
            if task.fn.__doc__:
                components[name]["description"] = task.fn.__doc__.strip().splitlines()[0]
            variants.append({"$ref": f"#/components/schemas/{name}"})
        post = schema.get("paths", {}).get(f"{API_PREFIX}/jobs", {}).get("post")
        if post is not None:
            post["requestBody"]["content"]["application/json"]["schema"] = {"oneOf": variants}
    app.openapi_schema = schema
    return schema


__all__ = ["API_PREFIX", "ErrorRoute", "create_app"]
