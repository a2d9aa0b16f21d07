"""The ingestion job types, written on the public task API like any user's tasks.

`process_text` (priority 10) and `process_file` (priority 5) extract, chunk, embed and store a source; a bad input
fails its job at once with a clear message (no retries: the same bytes would fail the same way).

A website is a workflow (`Ingestion.add_website`): the step `crawl` (`crawl_website`, priority 3) fetches the site
breadth first (links are found while fetching, so the pages are not known up front) and, for each page it fetched,
adds a step `page-<n>` (`index_page`: chunk, embed, store that page) to its own workflow, before the final step
`ready` (`finish_crawl`), which therefore waits for the crawl and every page and then marks the source `ready`. Page
steps run beside the crawl, on any worker; the first page's step replaces the chunks of an earlier crawl and the
others run after it. The crawl saves a checkpoint after each page, so a retried or rescued crawl continues where it
stopped, and a page step added twice (the crawl re-run before its checkpoint) is added once. A `crawl_website` job
outside a workflow (enqueued by hand) still stores the pages itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.context import Cancel, JobContext

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.ingest.embed import Embedder
    from conveyor.ingest.store import Source, VectorStore

TASK_NAMES = ("process_text", "process_file", "crawl_website", "index_page", "finish_crawl")
CRAWL_PRIORITY = 3
FINAL_STEP = "ready"
EMBED_BATCH = 32  # texts per embed call (MiniLM runs them 8 at a time): small enough that progress is reported often
FILE_TIMEOUT_S = 1800.0
CRAWL_TIMEOUT_S = 3600.0
MAX_SKIPPED_IN_RESULT = 50


def register_ingest_tasks(app: Conveyor) -> None:
    """Register the three ingestion tasks on an app (idempotent)."""
    if all(name in app.tasks for name in TASK_NAMES):
        return
    app.task(name="process_text", priority=10, max_retries=0, timeout=FILE_TIMEOUT_S)(process_text)
    app.task(name="process_file", priority=5, max_retries=0, timeout=FILE_TIMEOUT_S)(process_file)
    app.task(name="crawl_website", priority=CRAWL_PRIORITY, max_retries=3, timeout=CRAWL_TIMEOUT_S)(crawl_website)
    app.task(name="index_page", priority=CRAWL_PRIORITY, max_retries=3, timeout=FILE_TIMEOUT_S)(index_page)
    app.task(name="finish_crawl", priority=CRAWL_PRIORITY, max_retries=3)(finish_crawl)


def _store(ctx: JobContext) -> VectorStore:
    from conveyor.ingest.store import open_store

    return open_store(ctx.app.database_url)


def _begin(ctx: JobContext, store: VectorStore, source_id: str) -> Source:
    source = store.get_source(source_id)
    if source is None:
        raise Cancel(f"source {source_id} was deleted")
    store.set_status(source_id, "processing")
    return source


Work = Callable[["VectorStore", "Source"], "int | tuple[int, dict[str, Any]]"]


def _run(ctx: JobContext, source_id: str, work: Work, *, finish: bool = True) -> dict[str, Any]:
    """Run `work(store, source)` (the chunk count, and details for the job's result); the source ends `ready` (unless
    a later step finishes it: `finish=False`), or `failed` with the error, which the job also shows."""
    from conveyor.ingest.errors import SourceNotFoundError

    store = _store(ctx)
    source = _begin(ctx, store, source_id)
    try:
        outcome = work(store, source)
    except SourceNotFoundError:
        raise Cancel(f"source {source_id} was deleted while it was processed") from None
    except Cancel:
        raise
    except Exception as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        store.set_status(source_id, "failed", message)
        raise
    chunk_count, details = outcome if isinstance(outcome, tuple) else (outcome, {})
    if finish:
        store.set_status(source_id, "ready")
        ctx.progress(100, stage="ready", chunks=chunk_count)
    return {"source_id": source_id, "chunk_count": chunk_count, **details}


def _embedder(store: VectorStore, source: Source) -> Embedder:
    """The model chosen when the source was created (checked then), else the namespace's, else the configured one:
    a namespace never mixes models. A model file missing or corrupt fails the job with a message naming it."""
    from conveyor.ingest.embed import embedder_for, embedder_name

    model = source.options.get("model")
    if not model:
        stored = store.namespace_model(source.namespace)
        model = stored[0] if stored is not None else embedder_name()
    return embedder_for(str(model))


def _embed(ctx: JobContext, embedder: Embedder, texts: list[str], start: int = 30, end: int = 90) -> Any:
    import numpy as np

    parts = []
    ctx.progress(start, stage="embedding", done=0, total=len(texts))
    for i in range(0, len(texts), EMBED_BATCH):
        if ctx.cancelled:
            raise Cancel("cancelled while embedding")
        parts.append(embedder.embed(texts[i : i + EMBED_BATCH]))
        done = min(i + EMBED_BATCH, len(texts))
        ctx.progress(start + (end - start) * done / len(texts), stage="embedding", done=done, total=len(texts))
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def _index_document(ctx: JobContext, store: VectorStore, source: Source, kind: str) -> int:
    from conveyor.ingest.chunk import make_chunks
    from conveyor.ingest.errors import ExtractionError
    from conveyor.ingest.extract import extract_file
    from conveyor.ingest.store import NewChunks

    if not source.location:
        raise ExtractionError("the source has no stored content")
    ctx.progress(5, stage="extracting")
    text = extract_file(source.location, kind)
    ctx.progress(20, stage="chunking", characters=len(text))
    chunks = make_chunks(text)
    embedder = _embedder(store, source)
    vectors = _embed(ctx, embedder, [c.text for c in chunks])
    ctx.progress(92, stage="storing", total=len(chunks))
    meta = {"source_name": source.name}
    if source.kind == "file":
        meta["file_type"] = kind
    return store.replace_chunks(source.id, NewChunks(chunks, vectors, embedder.name, [meta] * len(chunks)))


def process_text(ctx: JobContext, source_id: str) -> dict[str, Any]:
    """Chunk, embed and index a text source."""
    return _run(ctx, source_id, lambda store, source: _index_document(ctx, store, source, "txt"))


def process_file(ctx: JobContext, source_id: str) -> dict[str, Any]:
    """Extract (PDF, DOCX, CSV, JSON, TXT, MD), chunk, embed and index an uploaded file."""

    def work(store: VectorStore, source: Source) -> int:
        return _index_document(ctx, store, source, str(source.options.get("file_type", "txt")))

    return _run(ctx, source_id, work)


def crawl_website(ctx: JobContext, source_id: str) -> dict[str, Any]:
    """Crawl a website (same-site pages up to `max_pages`): each fetched page becomes a step of the crawl's workflow
    that indexes it (outside a workflow, the crawl indexes each page itself)."""
    job = ctx.app.get_job(ctx.job_id)
    in_workflow = job is not None and job.workflow_id is not None
    return _run(ctx, source_id, lambda store, source: _crawl(ctx, store, source, in_workflow),
                finish=not in_workflow)


def index_page(
    ctx: JobContext, source_id: str, url: str, title: str, text: str, first_chunk: int, replace: bool = False
) -> dict[str, Any]:
    """Chunk, embed and store one crawled page (a step of its crawl's workflow). `replace`: the crawl's first page,
    whose chunks take the place of an earlier crawl's."""
    from conveyor.ingest.chunk import make_chunks
    from conveyor.ingest.errors import SourceNotFoundError
    from conveyor.ingest.store import NewChunks

    store = _store(ctx)
    source = store.get_source(source_id)
    if source is None:
        raise Cancel(f"source {source_id} was deleted")
    chunks = make_chunks(text, first_index=first_chunk)
    embedder = _embedder(store, source)
    vectors = _embed(ctx, embedder, [c.text for c in chunks], 5, 90) if chunks else _empty()
    meta = [{"url": url, "title": title}] * len(chunks)
    try:
        store.append_chunks(source_id, NewChunks(chunks, vectors, embedder.name, meta), replace=replace, once=True)
    except SourceNotFoundError:
        raise Cancel(f"source {source_id} was deleted while it was indexed") from None
    ctx.progress(100, stage="stored", chunks=len(chunks))
    return {"url": url, "chunks": len(chunks), "first_chunk": first_chunk}


def finish_crawl(ctx: JobContext, source_id: str) -> dict[str, Any]:
    """The last step of a crawl's workflow: it runs once the crawl and every page's step completed, so every page's
    chunks are stored; the source becomes `ready`."""
    store = _store(ctx)
    source = store.get_source(source_id)
    if source is None:
        raise Cancel(f"source {source_id} was deleted")
    store.set_status(source_id, "ready")
    crawled = ctx.parent_results.get("crawl") or {}
    pages = crawled.get("pages", 0) if isinstance(crawled, dict) else 0
    ctx.progress(100, stage="ready", chunks=source.chunk_count)
    return {"source_id": source_id, "chunk_count": source.chunk_count, "pages": pages}


def _crawl(ctx: JobContext, store: VectorStore, source: Source, in_workflow: bool) -> tuple[int, dict[str, Any]]:
    from conveyor.errors import InvalidStateError
    from conveyor.ingest.chunk import make_chunks
    from conveyor.ingest.crawl import CrawlState, Page, crawl
    from conveyor.ingest.fetch import CrawlPolicy
    from conveyor.ingest.store import NewChunks

    embedder = None if in_workflow else _embedder(store, source)  # in a workflow, the pages' steps embed
    max_pages = int(source.options.get("max_pages", 10))
    include_subpages = bool(source.options.get("include_subpages", True))
    saved = store.load_checkpoint(source.id)
    state = CrawlState.from_dict(saved) if saved else None
    if state is not None:
        ctx.logger.info("resuming crawl of %s after %d pages", source.location, state.pages)
    limit = max_pages if include_subpages else 1
    tags = [f"source:{source.id}", f"namespace:{source.namespace}"]

    def add_page_step(page: Page, current: CrawlState, count: int) -> None:
        """The page's step, before the final one; the first page's step replaces an earlier crawl's chunks, so the
        others run after it."""
        first = current.pages == 1
        step = {
            "name": f"page-{current.pages}", "type": "index_page", "after": [] if first else ["page-1"],
            "args": {"source_id": source.id, "url": page.url, "title": page.title, "text": page.text,
                     "first_chunk": current.next_chunk - count, "replace": first},
            "tags": tags, "metadata": {"source_id": source.id, "namespace": source.namespace, "url": page.url},
        }
        try:
            ctx.extend_workflow([step], before=[FINAL_STEP])
        except InvalidStateError as exc:  # the workflow was cancelled, or a page's step failed: it cannot finish
            raise Cancel(f"the crawl's workflow cannot go on: {exc.message}") from None

    def on_page(page: Page | None, current: CrawlState) -> None:
        chunks = make_chunks(page.text, first_index=current.next_chunk) if page is not None else []
        current.next_chunk += len(chunks)
        if embedder is None:
            if page is not None:
                add_page_step(page, current, len(chunks))
            store.append_chunks(source.id, NewChunks([], _empty(), ""), current.to_dict())  # the checkpoint
        else:
            vectors = embedder.embed([c.text for c in chunks]) if chunks else _empty()
            first = current.next_chunk == len(chunks) and bool(chunks)  # the first chunks replace an earlier crawl's
            meta = [{"url": page.url, "title": page.title}] * len(chunks) if page is not None else []
            new = NewChunks(chunks, vectors, embedder.name, meta)
            store.append_chunks(source.id, new, current.to_dict(), replace=first)
        ctx.progress(
            5 + 90 * current.pages / limit, stage="crawling", done=current.pages, total=limit,
            url=page.url if page is not None else None,
        )

    ctx.progress(2, stage="crawling", done=state.pages if state else 0, total=limit)
    final = crawl(
        source.location or "",
        max_pages=max_pages,
        include_subpages=include_subpages,
        policy=CrawlPolicy(allow_private=ctx.app.settings.crawl_allow_private),
        on_page=on_page,
        state=state,
        should_stop=lambda: ctx.cancelled,
    )
    if ctx.cancelled:
        raise Cancel("cancelled while crawling")
    # The checkpoint stays: should this attempt's completion be lost (at-least-once), a re-run finds the crawl done
    # and adds nothing twice. It goes with the source.
    ctx.logger.info("crawled %d pages of %s (%d skipped)", final.pages, source.location, len(final.skipped))
    skipped = dict(list(final.skipped.items())[:MAX_SKIPPED_IN_RESULT])
    if in_workflow:  # the chunks of its pages, which their steps store
        chunk_count = final.next_chunk
    else:
        source_now = store.get_source(source.id)
        chunk_count = source_now.chunk_count if source_now else 0
    return chunk_count, {"pages": final.pages, "skipped": skipped}


def _empty() -> Any:
    import numpy as np

    return np.zeros((0, 0), dtype=np.float32)
