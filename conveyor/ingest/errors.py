"""Errors of the ingestion job types; all are ConveyorErrors.

IngestError
├── ExtractionError      a file could not be read (bad, empty, too large, too deep...)
├── UnsafeURLError       a URL the crawler refuses (scheme, private address, ...)
├── CrawlError           a website could not be crawled (robots.txt 5xx, no page fetched)
├── EmbeddingError       the embedder failed or is misconfigured
├── MissingExtraError    an optional part this request needs is not installed
├── ModelMismatchError   a namespace holds vectors of another embedding model
└── SourceNotFoundError  no source has that id
"""

from __future__ import annotations

from conveyor.errors import ConveyorError


class IngestError(ConveyorError):
    """Ingestion failed."""

    code = "ingest_error"


class ExtractionError(IngestError):
    """The file could not be read."""

    code = "extraction_failed"


class UnsafeURLError(IngestError):
    """The URL is not allowed."""

    code = "unsafe_url"


class CrawlError(IngestError):
    """The website could not be crawled."""

    code = "crawl_failed"


class EmbeddingError(IngestError):
    """The embedder failed."""

    code = "embedding_failed"


class MissingExtraError(IngestError):
    """An optional part of Conveyor that this request needs is not installed."""

    code = "extra_not_installed"

    def __init__(self, extra: str, detail: str) -> None:
        self.extra = extra
        super().__init__(f"{detail}: install the `{extra}` extra (pip install 'conveyor-jobs[{extra}]')")


class ModelMismatchError(IngestError):
    """The namespace holds vectors of another embedding model."""

    code = "model_mismatch"

    def __init__(self, namespace: str, stored: str, wanted: str) -> None:
        self.namespace = namespace
        self.stored = stored
        self.wanted = wanted
        super().__init__(
            f"namespace {namespace!r} holds vectors of model {stored!r}; refusing to mix in {wanted!r} "
            "(use another namespace, or delete its sources first)"
        )


class SourceNotFoundError(IngestError):
    """No source has that id."""

    code = "not_found"

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        super().__init__(f"source {source_id} not found")
