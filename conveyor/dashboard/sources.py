"""The sources page: the built-in ingestion's sources per namespace, adding and deleting them, and a search box.
The ingestion plugin adds it (`conveyor.ingest.plugin`); it uses that package's public `Ingestion` service, as a
user's page would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conveyor.dashboard._security import safe_next
from conveyor.errors import ConveyorError
from conveyor.ingest import Ingestion

if TYPE_CHECKING:
    from conveyor.dashboard import Dashboard
    from conveyor.ingest.store import Source

SEARCH_TOP_K = 8


class SourcesPage:
    nav_label = "Sources"
    nav_path = "/ui/sources"

    def __init__(self) -> None:
        self._dashboard: Dashboard | None = None
        self._ingestion: Ingestion | None = None

    @property
    def dashboard(self) -> Dashboard:
        assert self._dashboard is not None, "add_routes binds the page to its dashboard"
        return self._dashboard

    @property
    def ingestion(self) -> Ingestion:
        """Made on first use: it registers the ingestion's tasks on the app, if they are not there yet."""
        if self._ingestion is None:
            self._ingestion = Ingestion(self.dashboard.conveyor)
        return self._ingestion

    def add_routes(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard
        r = dashboard.router
        r.add_api_route("/ui/sources", self.page, methods=["GET"])
        r.add_api_route("/ui/sources/{kind}", self.add, methods=["POST"])
        r.add_api_route("/ui/sources/{source_id}/delete", self.delete, methods=["POST"])
        r.add_api_route("/ui/data/sources", self.data, methods=["GET"])

    async def page(self, request: Request) -> Response:
        d = self.dashboard
        if (gate := d.auth.page_gate(request)) is not None:
            return gate
        p = request.query_params
        everything = await d.call(self.ingestion.list_sources, None)
        namespaces = sorted({s.namespace for s in everything})
        namespace = p.get("namespace") or (namespaces[0] if namespaces else "")
        sources = [s for s in everything if s.namespace == namespace]
        query = p.get("q", "").strip()
        results: list[dict[str, Any]] = []
        error = None
        if query and namespace:
            try:
                results = await d.call(self.ingestion.search, namespace, query, SEARCH_TOP_K)
            except ConveyorError as exc:
                error = exc.message
        names = {s.id: s.name for s in sources}
        pipelines = await d.call(self._pipelines, sources)
        embeddings = await d.call(self.ingestion.embedding_status)
        return d.render(
            request,
            "sources.html",
            namespaces=namespaces,
            namespace=namespace,
            sources=sources,
            query=query,
            results=results,
            source_names=names,
            error=error,
            embeddings=embeddings,
            pipelines=pipelines,
            next_url="/ui/sources?" + urlencode({"namespace": namespace}) if namespace else "/ui/sources",
        )

    def _pipelines(self, sources: list[Source]) -> dict[str, str]:
        """Source id -> the workflow its job belongs to (a crawl's pipeline: the crawl, a step per page, `ready`)."""
        out: dict[str, str] = {}
        for source in sources:
            job = self.dashboard.conveyor.get_job(source.job_id) if source.job_id else None
            if job is not None and job.workflow_id is not None:
                out[source.id] = job.workflow_id
        return out

    async def data(self, request: Request, namespace: str = "") -> Response:
        """The namespace's sources as JSON, for the page to follow their processing."""
        if (gate := self.dashboard.auth.data_gate(request)) is not None:
            return gate
        sources = await self.dashboard.call(self.ingestion.list_sources, namespace or None)
        return JSONResponse({"sources": [s.to_dict() for s in sources]}, headers={"Cache-Control": "no-store"})

    async def add(self, request: Request, kind: str) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        namespace = form.get("namespace", "").strip()
        back = "/ui/sources?" + urlencode({"namespace": namespace})
        try:
            if kind == "text":
                name = form.get("name", "").strip() or None
                source, _ = await d.call(self.ingestion.add_text, namespace, form.get("text", ""), name)
            elif kind == "website":
                pages = int(form.get("max_pages") or 10)
                subpages = form.get("include_subpages") == "on"
                url = form.get("url", "").strip()
                source, _ = await d.call(self.ingestion.add_website, namespace, url, pages, subpages)
            elif kind == "file":
                body = await request.form()
                try:
                    upload = body.get("file")
                    if not isinstance(upload, UploadFile) or not upload.filename:
                        return d.done(request, "Choose a file to upload.", back, ok=False, status=422)
                    filename = upload.filename
                    source, _ = await d.call(self.ingestion.add_file, namespace, filename, upload.file)
                finally:
                    await body.close()  # the spooled upload
            else:
                return d.done(request, f"Unknown kind of source {kind!r}.", back, ok=False, status=404)
        except (ConveyorError, ValueError) as exc:
            message = exc.message if isinstance(exc, ConveyorError) else "max pages must be a whole number"
            return d.done(request, message, back, ok=False, status=422)
        return d.done(request, f"Added {source.name}; it is being processed.", back, source=source.to_dict())

    async def delete(self, request: Request, source_id: str) -> Response:
        d = self.dashboard
        refused, form = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        back = safe_next(form.get("next"), "/ui/sources")
        try:
            await d.call(self.ingestion.delete_source, source_id)
        except ConveyorError as exc:
            return d.done(request, exc.message, back, ok=False, status=404)
        return d.done(request, "Source deleted.", back, id=source_id, deleted=True)
