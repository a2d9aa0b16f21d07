"""One place that turns every failure into the SPEC's error body: `{"error": {"code": ..., "message": ...}}`.

No stack trace ever reaches a client: unexpected exceptions are logged here and answered with a generic 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import (
    BackendError,
    ConfigError,
    ConveyorError,
    InvalidArgumentsError,
    InvalidStateError,
    JobFailed,
    JobNotFoundError,
    ScheduleNotFoundError,
    UnknownTaskError,
    WorkflowNotFoundError,
)
from conveyor.jsonsafe import fields_problem, json_problem

log = logging.getLogger("conveyor.api")

_STATUS_OF: list[tuple[type[ConveyorError], int]] = [
    (JobNotFoundError, 404),
    (WorkflowNotFoundError, 404),
    (ScheduleNotFoundError, 404),
    (InvalidStateError, 409),
    (JobFailed, 409),
    (UnknownTaskError, 422),
    (InvalidArgumentsError, 422),
    (ConfigError, 422),
    (BackendError, 503),
]

_CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}

# Validation errors that mean "the body is not a JSON object" (400) rather than "a field is wrong" (422).
_NOT_AN_OBJECT = {"json_invalid", "model_attributes_type", "dict_type", "model_type", "missing", "json_type"}


class ApiError(Exception):
    """An HTTP error raised by the API layer itself, answered as the SPEC's error body."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODE_OF_STATUS.get(status, "error")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def status_of(exc: ConveyorError) -> int:
    for kind, status in _STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 500


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:10]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def to_response(exc: BaseException) -> JSONResponse:
    """The error body for any exception."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        for err in errors:
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "json_invalid" or (loc == ("body",) and err.get("type") in _NOT_AN_OBJECT):
                return error_response(400, "bad_request", "the request body must be a JSON object")
        return error_response(422, "invalid_request", _validation_message(errors))
    if isinstance(exc, ConveyorError):
        status = status_of(exc)
        if status >= 500:
            log.error("API request failed: %s", exc, exc_info=exc)
            reason = exc.reason if isinstance(exc, BackendError) else None
            message = f"the database is unavailable: {reason}" if reason else "the database is unavailable; try again"
            return error_response(status, exc.code, message)
        return error_response(status, exc.code, exc.message)
    if isinstance(exc, StarletteHTTPException):
        code = _CODE_OF_STATUS.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route"
        return error_response(exc.status_code, code, detail, dict(exc.headers or {}))
    log.error("API request failed", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def _json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _nul_in_body(request: Request) -> str | None:
    """Where a JSON body holds a NUL character (`args.x`, `jobs[2].queue`), which no field takes: PostgreSQL cannot
    store one, SQLite would. Strict JSON can only carry it escaped, so a body without `\\u0000` is not parsed."""
    body = await request.body()  # (read once: the route's own parsing reuses it)
    if b"\\u0000" not in body:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None  # the route answers that the body is not JSON
    return fields_problem(value) if isinstance(value, dict) else json_problem(value, "body")


class ErrorRoute(APIRoute):
    """A route whose errors (validation included) come out in the SPEC's shape, wherever its router is mounted."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_json = self.body_field is not None and not isinstance(self.body_field.field_info, params.Form)

        async def guarded(request: Request) -> Response:
            try:
                if takes_json and (problem := await _nul_in_body(request)) is not None:
                    return error_response(422, InvalidArgumentsError.code, problem)
                return await handler(request)
            except RequestValidationError as exc:
                content_type = request.headers.get("content-type", "")
                if takes_json and content_type and not _json_media_type(content_type):
                    # FastAPI leaves such a body unread, then reports a missing or wrong body: say the real cause
                    return error_response(
                        400, "bad_request", f"Content-Type must be application/json, got {content_type[:100]}"
                    )
                return to_response(exc)
            except (ApiError, ConveyorError, StarletteHTTPException) as exc:
                return to_response(exc)

        return guarded


def install_error_handlers(app: FastAPI) -> None:
    """Errors outside the routes (unknown route, wrong method, crashes) in the SPEC's shape too."""

    async def handle(request: Request, exc: Exception) -> Response:
        return to_response(exc)

    for kind in (ApiError, ConveyorError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
