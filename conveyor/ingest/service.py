"""Sources as the API and CLI see them: create one and enqueue its job, read, delete, search."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conveyor.errors import ConveyorError, InvalidArgumentsError
from conveyor.ingest.errors import IngestError, SourceNotFoundError
from conveyor.ingest.tasks import FINAL_STEP, register_ingest_tasks
from conveyor.job import OPEN_STATUSES, Job, JobStatus

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.ingest.embed import EmbedderStatus
    from conveyor.ingest.store import SearchFilter, Source, VectorStore

MAX_NAME = 200
MAX_TEXT_CHARS = 10_000_000
DEFAULT_MAX_PAGES = 10
DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_QUERY_CHARS = 10_000
COPY_BLOCK = 1024 * 1024


class FileTooLargeError(IngestError):
    """The upload is larger than CONVEYOR_MAX_UPLOAD_MB."""

    code = "payload_too_large"


def _name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise InvalidArgumentsError(f"{kind} must be a non-empty string of at most {MAX_NAME} characters")
    return value.strip()


class Ingestion:
    """The ingestion service of one app: `Ingestion(app).add_text("docs", "hello")`."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        register_ingest_tasks(app)

    @property
    def store(self) -> VectorStore:
        from conveyor.ingest.store import open_store

        return open_store(self.app.database_url)

    @property
    def data_dir(self) -> Path:
        return Path(self.app.settings.data_dir).expanduser().resolve()

    @property
    def max_upload_bytes(self) -> int:
        return self.app.settings.max_upload_mb * 1024 * 1024

    # ---------------------------------------------------------------------------------- creating
    def add_text(self, namespace: str, text: str, name: str | None = None) -> tuple[Source, Job]:
        namespace = _name("namespace", namespace)
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgumentsError("text must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidArgumentsError(f"text is longer than {MAX_TEXT_CHARS} characters")
        label = _name("name", name) if name is not None else (text.strip().splitlines()[0][:80] or "text")
        path = self._blob_path(".txt")
        path.write_text(text, encoding="utf-8")
        # a text given a name replaces the namespace's text of that name
        return self._create(namespace, label, "text", "process_text", location=path, options={},
                            replaces=name is not None)

    def add_file(self, namespace: str, filename: str, content: bytes | IO[bytes]) -> tuple[Source, Job]:
        """Store an upload under CONVEYOR_DATA_DIR by a generated name (never the client's), then enqueue it."""
        from conveyor.ingest.errors import ExtractionError
        from conveyor.ingest.extract import kind_of

        namespace = _name("namespace", namespace)
        label = _name("file name", os.path.basename(filename or "") or "upload")
        try:
            kind = kind_of(label)
        except ExtractionError as exc:
            raise InvalidArgumentsError(exc.message) from None
        path = self._blob_path(Path(label).suffix.lower())
        try:
            size = self._copy(content, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size == 0:
            path.unlink(missing_ok=True)
            raise InvalidArgumentsError("the file is empty (0 bytes)")
        return self._create(
            namespace, label, "file", "process_file", location=path, options={"file_type": kind, "bytes": size}
        )

    def add_website(
        self, namespace: str, url: str, max_pages: int = DEFAULT_MAX_PAGES, include_subpages: bool = True
    ) -> tuple[Source, Job]:
        from conveyor.ingest.crawl import MAX_PAGES_LIMIT, normalise_url
        from conveyor.ingest.fetch import CrawlPolicy, check_url_statically

        namespace = _name("namespace", namespace)
        if not isinstance(max_pages, int) or isinstance(max_pages, bool) or not 1 <= max_pages <= MAX_PAGES_LIMIT:
            raise InvalidArgumentsError(f"max_pages must be an integer from 1 to {MAX_PAGES_LIMIT}")
        try:
            check_url_statically(url, CrawlPolicy(allow_private=self.app.settings.crawl_allow_private))
        except IngestError as exc:
            raise InvalidArgumentsError(exc.message) from None
        start = normalise_url(url) or url
        options = {"max_pages": max_pages, "include_subpages": bool(include_subpages)}
        return self._create(namespace, start, "website", "crawl_website", location=start, options=options)

    def _blob_path(self, suffix: str) -> Path:
        folder = self.data_dir / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}{suffix}"

    def _copy(self, content: bytes | IO[bytes], path: Path) -> int:
        limit = self.max_upload_bytes
        if isinstance(content, bytes | bytearray):
            if len(content) > limit:
                raise FileTooLargeError(f"the file is larger than {self.app.settings.max_upload_mb} MB")
            path.write_bytes(content)
            return len(content)
        size = 0
        with path.open("wb") as out:
            while block := content.read(COPY_BLOCK):
                size += len(block)
                if size > limit:
                    raise FileTooLargeError(f"the file is larger than {self.app.settings.max_upload_mb} MB")
                out.write(block)
        return size

    def _create(
        self, namespace: str, name: str, kind: str, task: str, *, location: str | Path, options: dict[str, Any],
        replaces: bool = True,
    ) -> tuple[Source, Job]:
        """Insert the source (or, when the namespace has one of that kind and name, renew it), then enqueue its job;
        if either fails, nothing stays behind (nor the stored file)."""
        blob = location if isinstance(location, Path) else None
        try:
            existing = self.store.find_source(namespace, kind, name) if replaces else None
            if existing is not None:
                return self._renew(existing, task, str(location), options)
            return self._insert_and_enqueue(namespace, name, kind, task, str(location), options)
        except BaseException:
            if blob is not None:
                blob.unlink(missing_ok=True)
            raise

    def _insert_and_enqueue(
        self, namespace: str, name: str, kind: str, task: str, location: str, options: dict[str, Any]
    ) -> tuple[Source, Job]:
        store = self.store
        options = {**options, "model": self.model_for(namespace)}
        source_id = str(uuid.uuid4())
        store.insert_source(source_id, namespace, name, kind, location=location, options=options)
        try:
            job = self._enqueue(task, source_id, namespace, {"source_id": source_id, "namespace": namespace,
                                                             "kind": kind})
        except BaseException:
            store.delete_source(source_id)
            raise
        store.set_job(source_id, job.id)
        source = store.get_source(source_id)
        assert source is not None
        return source, job

    def _renew(self, old: Source, task: str, location: str, options: dict[str, Any]) -> tuple[Source, Job]:
        """The same file (name) again: the source keeps its id and gets the new content and a new job, whose run
        replaces its chunks in one transaction (searches see the old chunks until then, never both)."""
        store = self.store
        options = {**options, "model": self.model_for(old.namespace)}
        for job in self._open_jobs(old.id):
            with contextlib.suppress(ConveyorError):  # it ended meanwhile
                self.app.cancel(job.id)
        store.reset_source(old, location=location, options=options)
        try:
            job = self._enqueue(task, old.id, old.namespace, {"source_id": old.id, "namespace": old.namespace,
                                                              "kind": old.kind, "replaces": True})
        except BaseException:
            store.reset_source(old, location=old.location, options=old.options, status=old.status, error=old.error,
                               job_id=old.job_id)
            raise
        store.set_job(old.id, job.id)
        if old.kind in ("text", "file") and old.location and old.location != location:
            self._remove_blob(old.location)
        source = store.get_source(old.id)
        assert source is not None
        return source, job

    def _enqueue(self, task: str, source_id: str, namespace: str, metadata: dict[str, Any]) -> Job:
        """The source's job; a crawl is a workflow (`conveyor.ingest.tasks`): its step `crawl` (the job returned),
        the pages' steps it adds as it fetches them, and the step `ready` after them all."""
        tags = [f"source:{source_id}", f"namespace:{namespace}"]
        if task != "crawl_website":
            return self.app.enqueue(task, {"source_id": source_id}, tags=tags, metadata=metadata)
        options = {"tags": tags, "metadata": metadata}
        workflow = self.app.workflow("crawl_website", metadata=metadata)
        crawl = workflow.step("crawl", task, source_id=source_id, options=options)
        workflow.step(FINAL_STEP, "finish_crawl", after=[crawl], source_id=source_id, options=options)
        return workflow.enqueue().step("crawl")

    def final_job(self, job: Job) -> Job:
        """The job whose end is the source's: its own, or for a crawl its workflow's step `ready` (which a failed
        crawl or page cancels, naming it)."""
        if job.workflow_id is None:
            return job
        return self.app.get_workflow_step(job.workflow_id, FINAL_STEP) or job

    def _final_job(self, job: Job | None) -> Job | None:
        return None if job is None else self.final_job(job)

    def model_for(self, namespace: str) -> str:
        """The model a new source of the namespace is embedded with: the namespace's own, or for an empty one the
        configured model. Refused now, before anything is stored, rather than by a failed job later: a model this
        installation cannot run (MissingExtraError), or one other than the namespace's when CONVEYOR_EMBEDDER names
        one (ModelMismatchError)."""
        from conveyor.ingest.embed import embedder_name, explicit_choice, require_model
        from conveyor.ingest.errors import ModelMismatchError

        stored = self.store.namespace_model(namespace)
        wanted = embedder_name()
        if stored is not None and stored[0] != wanted and explicit_choice():
            raise ModelMismatchError(namespace, stored[0], wanted)
        model = stored[0] if stored is not None else wanted
        require_model(model)
        return model

    # ---------------------------------------------------------------------------------- reading
    def get_source(self, source_id: str) -> Source:
        source = self.store.get_source(str(source_id))
        if source is None:
            raise SourceNotFoundError(str(source_id))
        return self._reconciled(source)

    def list_sources(self, namespace: str | None = None, limit: int = 1000) -> list[Source]:
        return [self._reconciled(s) for s in self.store.list_sources(namespace, limit)]

    def _reconciled(self, source: Source) -> Source:
        """The source as its job says (a crawl's: its workflow's last step): failed if the job ended failed or
        cancelled without the task saying so (its worker died, it was cancelled while waiting, a page's step did not
        complete); pending, with the last error, while a failed attempt waits for its retry or a retried crawl's
        workflow runs again (`failed` is final otherwise)."""
        if not source.job_id or source.status == "ready":
            return source
        job = self.app.get_job(source.job_id)
        final = self._final_job(job)
        if source.status == "failed":
            retrying = job is not None and job.status in (JobStatus.SCHEDULED, JobStatus.PENDING)
            rerun = final is not None and final is not job and not final.status.is_terminal  # a retried workflow
            if retrying or rerun:
                return dataclasses.replace(source, status="pending")
            return source
        job = final
        if job is None or job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            return source
        error = job.error or f"its job was {job.status}"
        self.store.set_status(source.id, "failed", error)
        return self.store.get_source(source.id) or source

    def source_jobs(self, source_id: str) -> list[Job]:
        self.get_source(source_id)
        return list(self.app.list_jobs(tag=f"source:{source_id}", limit=1000).jobs)

    def wait(self, source_id: str, timeout: float | None = None, poll_interval: float = 0.2) -> Source:
        """Block until the source's job (a crawl's: its workflow's last step) has ended (after any retries), then
        return the source, `ready` or `failed`; TimeoutError after `timeout` seconds."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            source = self.get_source(source_id)
            job = self._final_job(self.app.get_job(source.job_id)) if source.job_id else None
            if job is None or job.status.is_terminal:
                return self.get_source(source_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"source {source_id} is still {source.status} after {timeout}s")
            time.sleep(poll_interval)

    # ---------------------------------------------------------------------------------- deleting
    def delete_source(self, source_id: str) -> None:
        """Cancel the source's pending and running jobs, delete its vectors, then the source (and its file)."""
        source = self.store.get_source(str(source_id))
        if source is None:
            raise SourceNotFoundError(str(source_id))
        for job in self._open_jobs(source.id):
            try:
                self.app.cancel(job.id)
            except Exception:  # noqa: BLE001, S112 - it ended meanwhile: nothing to cancel
                continue
        self.store.delete_source(source.id)
        if source.kind in ("text", "file") and source.location:
            self._remove_blob(source.location)

    def _open_jobs(self, source_id: str) -> Iterable[Job]:
        page = self.app.list_jobs(tag=f"source:{source_id}", status=list(OPEN_STATUSES), limit=1000)
        return page.jobs

    def _remove_blob(self, location: str) -> None:
        path = Path(location).resolve()
        if path.is_relative_to(self.data_dir) and path.is_file():
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------- searching
    def embedding_status(self) -> EmbedderStatus:
        """Which embedder new namespaces get; for the hashing fallback, what to install (the dashboard says it)."""
        from conveyor.ingest.embed import embedder_status

        return embedder_status()

    def search(
        self,
        namespace: str,
        query: str,
        top_k: int = DEFAULT_TOP_K,
        *,
        mode: str = "hybrid",
        filters: SearchFilter | None = None,
    ) -> list[dict[str, Any]]:
        """The chunks of the namespace that best answer the query, best first. `mode`: `hybrid` (vector and keyword
        lists fused by reciprocal rank; `score` is the fused score), `vector` (`score`: cosine similarity) or
        `keyword` (`score`: full-text relevance r mapped to r / (1 + r)). Each result's `matched` names the lists
        that found it. An unknown namespace has no results."""
        from conveyor.ingest.embed import embedder_for, require_model
        from conveyor.ingest.store import NO_FILTER, SEARCH_MODES

        namespace = _name("namespace", namespace)
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgumentsError("query must be a non-empty string")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgumentsError(f"query is longer than {MAX_QUERY_CHARS} characters")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidArgumentsError(f"top_k must be an integer from 1 to {MAX_TOP_K}")
        if mode not in SEARCH_MODES:
            raise InvalidArgumentsError(f"mode must be one of {', '.join(SEARCH_MODES)}")
        stored = self.store.namespace_model(namespace)
        if stored is None:
            return []
        vector = None
        if mode != "keyword":
            require_model(stored[0])
            vector = embedder_for(stored[0]).embed([query])[0]
        return self.store.search(
            namespace, vector, top_k, stored[0], text=query, mode=mode, filters=filters or NO_FILTER
        )
