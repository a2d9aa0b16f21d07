"""Built-in ingestion: files, text and websites into chunks, embeddings and searchable vectors (SPEC section 5).

    from conveyor import Conveyor
    from conveyor.ingest import Ingestion

    app = Conveyor()                                   # registers process_text, process_file, crawl_website, ...
    ingestion = Ingestion(app)
    source, job = ingestion.add_text("docs", "Conveyor runs background jobs.", name="intro")
    app.run_worker(burst=True)
    ingestion.search("docs", "background jobs", top_k=3)
"""

from conveyor.ingest.errors import (
    CrawlError,
    EmbeddingError,
    ExtractionError,
    IngestError,
    ModelMismatchError,
    SourceNotFoundError,
    UnsafeURLError,
)
from conveyor.ingest.service import FileTooLargeError, Ingestion
from conveyor.ingest.tasks import register_ingest_tasks

__all__ = [
    "CrawlError",
    "EmbeddingError",
    "ExtractionError",
    "FileTooLargeError",
    "IngestError",
    "Ingestion",
    "ModelMismatchError",
    "SourceNotFoundError",
    "UnsafeURLError",
    "register_ingest_tasks",
]
