"""The ingestion endpoints of SPEC section 5, as a FastAPI router that the REST API mounts under `/api/v1`.

Errors answer `{"error": {"code", "message"}}` by themselves (404, 413, 422), so the router behaves the same inside
the full API and in a bare FastAPI app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from conveyor.blocking import BlockingCalls
from conveyor.errors import BackendError, ConveyorError, InvalidArgumentsError
from conveyor.ingest.errors import MissingExtraError, ModelMismatchError, SourceNotFoundError
from conveyor.ingest.service import DEFAULT_MAX_PAGES, DEFAULT_TOP_K, FileTooLargeError, Ingestion
from conveyor.ingest.store import SearchFilter
from conveyor.jsonsafe import fields_problem

if TYPE_CHECKING:
    from conveyor.app import Conveyor

MULTIPART_OVERHEAD_BYTES = 64 * 1024


class TextSourceIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    namespace: str
    text: str
    name: str | None = None


class WebsiteSourceIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    namespace: str
    url: str
    max_pages: int = DEFAULT_MAX_PAGES
    include_subpages: bool = True


class FiltersIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    source_ids: list[str] = pydantic.Field(default_factory=list, max_length=1000)
    kinds: list[Literal["text", "file", "website"]] = pydantic.Field(default_factory=list)
    metadata: dict[str, str | bool | int | float] = pydantic.Field(default_factory=dict, max_length=50)


class SearchIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    namespace: str
    query: str
    top_k: int = DEFAULT_TOP_K
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    filters: FiltersIn | None = None

    def search_filter(self) -> SearchFilter:
        f = self.filters or FiltersIn()
        return SearchFilter(tuple(f.source_ids), tuple(f.kinds), dict(f.metadata))


FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "namespace"],
                    "properties": {"file": {"type": "string", "format": "binary"}, "namespace": {"type": "string"}},
                }
            }
        },
    }
}


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _failure(exc: Exception) -> JSONResponse:
    if isinstance(exc, SourceNotFoundError):
        return error(404, "not_found", exc.message)
    if isinstance(exc, FileTooLargeError):
        return error(413, "payload_too_large", exc.message)
    if isinstance(exc, InvalidArgumentsError | ModelMismatchError | MissingExtraError):
        return error(422, exc.code, exc.message)
    if isinstance(exc, BackendError):  # as the rest of the API says it: no driver detail
        return error(503, exc.code, f"the database is unavailable: {exc.reason or 'try again'}")
    if isinstance(exc, ConveyorError):
        return error(500, exc.code, exc.message)
    raise exc


def _body_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _parse(request: Request, model: type[pydantic.BaseModel]) -> Any:
    """The JSON body validated by `model`, or the error response to send."""
    try:
        body = await request.json()
    except ValueError:
        return error(400, "bad_request", "the body is not valid JSON")
    if not isinstance(body, dict):
        return error(400, "bad_request", "the body must be a JSON object")
    if (problem := fields_problem(body)) is not None:  # a NUL character: PostgreSQL cannot store it, SQLite would
        return error(422, InvalidArgumentsError.code, problem)
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        return error(422, "invalid_request", detail)


def _created(ingestion: Ingestion, result: Any) -> JSONResponse:
    source, job = result
    return JSONResponse({"source": source.to_dict(), "job_id": job.id}, status_code=201)


run = BlockingCalls("conveyor-ingest", threads=None).run  # the store and the backend block: the loop's threads


def create_router(conveyor: Conveyor) -> APIRouter:
    """Routes for `/sources...` and `/search`; mount with `prefix="/api/v1"`."""
    ingestion = Ingestion(conveyor)
    router = APIRouter(tags=["ingestion"])
    _creating(router, ingestion, conveyor)
    _reading(router, ingestion)
    _searching(router, ingestion)
    return router


def _creating(router: APIRouter, ingestion: Ingestion, conveyor: Conveyor) -> None:
    @router.post("/sources/text", status_code=201, openapi_extra=_body_schema(TextSourceIn))
    async def create_text_source(request: Request) -> Response:
        """Index a text (job `process_text`, priority 10)."""
        body = await _parse(request, TextSourceIn)
        if isinstance(body, Response):
            return body
        try:
            return _created(ingestion, await run(ingestion.add_text, body.namespace, body.text, body.name))
        except ConveyorError as exc:
            return _failure(exc)

    @router.post("/sources/file", status_code=201, openapi_extra=FILE_BODY)
    async def create_file_source(request: Request) -> Response:
        """Upload a PDF, DOCX, CSV, JSON, TXT or MD file (job `process_file`, priority 5); 413 if too large."""
        limit = ingestion.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
            return error(413, "payload_too_large", f"the upload is larger than {conveyor.settings.max_upload_mb} MB")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(422, "invalid_request", "send the file as multipart/form-data, in the field `file`")
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as exc:  # noqa: BLE001 - starlette raises several kinds on a broken multipart body
            return error(400, "bad_request", f"cannot read the multipart body: {exc}")
        try:
            upload = form.get("file")
            namespace = form.get("namespace")
            if upload is None or isinstance(upload, str):
                return error(422, "invalid_request", "the multipart field `file` (a file) is required")
            if not isinstance(namespace, str):
                return error(422, "invalid_request", "the form field `namespace` is required")
            if (problem := fields_problem({"namespace": namespace})) is not None:
                return error(422, InvalidArgumentsError.code, problem)
            result = await run(ingestion.add_file, namespace, upload.filename or "upload", upload.file)
            return _created(ingestion, result)
        except ConveyorError as exc:
            return _failure(exc)
        finally:
            await form.close()

    @router.post("/sources/website", status_code=201, openapi_extra=_body_schema(WebsiteSourceIn))
    async def create_website_source(request: Request) -> Response:
        """Crawl a website: same-site pages up to `max_pages` (job `crawl_website`, priority 3)."""
        body = await _parse(request, WebsiteSourceIn)
        if isinstance(body, Response):
            return body
        try:
            result = await run(ingestion.add_website, body.namespace, body.url, body.max_pages, body.include_subpages)
            return _created(ingestion, result)
        except ConveyorError as exc:
            return _failure(exc)


def _reading(router: APIRouter, ingestion: Ingestion) -> None:
    @router.get("/sources")
    async def list_sources(namespace: str | None = None) -> Response:
        """Sources, newest first; `namespace` filters."""
        sources = await run(ingestion.list_sources, namespace)
        return JSONResponse({"sources": [s.to_dict() for s in sources]})

    @router.get("/sources/{source_id}")
    async def get_source(source_id: str) -> Response:
        try:
            source = await run(ingestion.get_source, source_id)
        except ConveyorError as exc:
            return _failure(exc)
        return JSONResponse(source.to_dict())

    @router.get("/sources/{source_id}/jobs")
    async def source_jobs(source_id: str) -> Response:
        """The jobs that processed (or are processing) the source."""
        try:
            jobs = await run(ingestion.source_jobs, source_id)
        except ConveyorError as exc:
            return _failure(exc)
        return JSONResponse({"jobs": [job.to_dict() for job in jobs]})

    @router.delete("/sources/{source_id}", status_code=204)
    async def delete_source(source_id: str) -> Response:
        """Cancel the source's pending and running jobs, delete its vectors, then the source."""
        try:
            await run(ingestion.delete_source, source_id)
        except ConveyorError as exc:
            return _failure(exc)
        return Response(status_code=204)


def _searching(router: APIRouter, ingestion: Ingestion) -> None:
    @router.post("/search", openapi_extra=_body_schema(SearchIn))
    async def search(request: Request) -> Response:
        """The `top_k` chunks of the namespace that best answer the query, best first. `mode`: `hybrid` (default;
        vector and keyword results fused by reciprocal rank), `vector` (`score`: cosine similarity) or `keyword`;
        `filters` by source ids, source kinds and metadata values. Each result's `matched` says which lists found it."""
        body = await _parse(request, SearchIn)
        if isinstance(body, Response):
            return body
        try:
            results = await run(
                ingestion.search, body.namespace, body.query, body.top_k, mode=body.mode, filters=body.search_filter()
            )
        except ConveyorError as exc:
            return _failure(exc)
        return JSONResponse({"results": results})
