"""The public surface of conveyor.ingest and how the tasks are registered."""

from __future__ import annotations

import conveyor.ingest
from conveyor import Conveyor


def test_exported_names() -> None:
    assert set(conveyor.ingest.__all__) == {
        "CrawlError", "EmbeddingError", "ExtractionError", "FileTooLargeError", "IngestError", "Ingestion",
        "ModelMismatchError", "SourceNotFoundError", "UnsafeURLError", "register_ingest_tasks",
    }
    for name in conveyor.ingest.__all__:
        assert getattr(conveyor.ingest, name) is not None


def test_tasks_registered_like_user_tasks() -> None:
    app = Conveyor("sqlite:///:memory:")
    tasks = {name: app.tasks[name] for name in ("process_text", "process_file", "crawl_website")}
    assert {n: t.priority for n, t in tasks.items()} == {"process_text": 10, "process_file": 5, "crawl_website": 3}
    assert tasks["process_file"].max_retries == 0 and tasks["crawl_website"].max_retries == 3
    assert all(t.takes_context and not t.is_async for t in tasks.values())
    assert Conveyor("sqlite:///:memory:", demo_tasks=False).tasks == {}
    only = Conveyor("sqlite:///:memory:", demo_tasks=False, ingest_tasks=True).tasks
    # the website crawl's workflow adds a step per page (index_page) and a final one (finish_crawl)
    assert set(only) == {"process_text", "process_file", "crawl_website", "index_page", "finish_crawl"}
    conveyor.ingest.register_ingest_tasks(app)  # idempotent
    assert app.tasks["process_text"] is tasks["process_text"]


def test_progress_stages_are_reported(sqlite_ingest_app: Conveyor) -> None:
    """The task called directly with a context that records what it reports (the worker writes these)."""
    from conveyor import JobContext
    from conveyor.ingest import Ingestion

    reported: list[tuple[int, dict[str, object] | None]] = []
    text = "\n\n".join(f"Paragraph {i} about harbours, tides and the moon. " * 8 for i in range(200))
    source, job = Ingestion(sqlite_ingest_app).add_text("ns", text)
    ctx = JobContext(sqlite_ingest_app, job.id, job.type, job.queue, 1, lambda _id, value, info: reported.append(
        (value, info)))
    result = sqlite_ingest_app.tasks["process_text"](ctx, source_id=source.id)
    assert result["chunk_count"] > 16  # more than one embedding batch
    stages = [info["stage"] for _, info in reported if info]
    assert stages[0] == "extracting" and stages[1] == "chunking" and stages[-2:] == ["storing", "ready"]
    embedding = [info for _, info in reported if info and info["stage"] == "embedding"]
    assert len(embedding) >= 2 and embedding[-1]["done"] == embedding[-1]["total"] == result["chunk_count"]
    values = [value for value, _ in reported]
    assert values == sorted(values) and values[-1] == 100
    assert Ingestion(sqlite_ingest_app).get_source(source.id).status == "ready"
