"""The ingestion job types, written on the public task API like any user's tasks.

`process_text` (priority 10) and `process_file` (priority 5) extract, chunk, embed and store a source; a bad input
fails its job at once with a clear message (no retries: the same bytes would fail the same way). `crawl_website`
(priority 3) stores each page as it goes with a checkpoint, so a retried or rescued crawl continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.context import Cancel, JobContext

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.ingest.embed import Embedder
    from conveyor.ingest.store import Source, VectorStore

TASK_NAMES = ("process_text", "process_file", "crawl_website")
EMBED_BATCH = 32  # one ONNX batch; small enough that progress is reported often
FILE_TIMEOUT_S = 1800.0
CRAWL_TIMEOUT_S = 3600.0
MAX_SKIPPED_IN_RESULT = 50


def register_ingest_tasks(app: Conveyor) -> None:
    """Register the three ingestion tasks on an app (idempotent)."""
    if all(name in app.tasks for name in TASK_NAMES):
        return
    app.task(name="process_text", priority=10, max_retries=0, timeout=FILE_TIMEOUT_S)(process_text)
    app.task(name="process_file", priority=5, max_retries=0, timeout=FILE_TIMEOUT_S)(process_file)
    app.task(name="crawl_website", priority=3, max_retries=3, timeout=CRAWL_TIMEOUT_S)(crawl_website)


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


def _run(ctx: JobContext, source_id: str, work: Work) -> dict[str, Any]:
    """Run `work(store, source)` (the chunk count, and details for the job's result); the source ends `ready`, or
    `failed` with the error, which the job also shows."""
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
    """Crawl a website (same-site pages up to `max_pages`), indexing each page as it is fetched."""
    return _run(ctx, source_id, lambda store, source: _crawl(ctx, store, source))


def _crawl(ctx: JobContext, store: VectorStore, source: Source) -> tuple[int, dict[str, Any]]:
    from conveyor.ingest.chunk import make_chunks
    from conveyor.ingest.crawl import CrawlState, Page, crawl
    from conveyor.ingest.fetch import CrawlPolicy
    from conveyor.ingest.store import NewChunks

    embedder = _embedder(store, source)
    max_pages = int(source.options.get("max_pages", 10))
    include_subpages = bool(source.options.get("include_subpages", True))
    saved = store.load_checkpoint(source.id)
    state = CrawlState.from_dict(saved) if saved else None
    if state is not None:
        ctx.logger.info("resuming crawl of %s after %d pages", source.location, state.pages)
    limit = max_pages if include_subpages else 1

    def on_page(page: Page | None, current: CrawlState) -> None:
        chunks = make_chunks(page.text, first_index=current.next_chunk) if page is not None else []
        vectors = embedder.embed([c.text for c in chunks]) if chunks else _empty()
        first = current.next_chunk == 0 and bool(chunks)  # this crawl's first chunks replace an earlier crawl's
        current.next_chunk += len(chunks)
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
    source_now = store.get_source(source.id)
    ctx.logger.info("crawled %d pages of %s (%d skipped)", final.pages, source.location, len(final.skipped))
    skipped = dict(list(final.skipped.items())[:MAX_SKIPPED_IN_RESULT])
    return (source_now.chunk_count if source_now else 0), {"pages": final.pages, "skipped": skipped}


def _empty() -> Any:
    import numpy as np

    return np.zeros((0, 0), dtype=np.float32)
