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
    assert set(only) == {"process_text", "process_file", "crawl_website"}
    conveyor.ingest.register_ingest_tasks(app)  # idempotent
    assert app.tasks["process_text"] is tasks["process_text"]


def test_progress_stages_are_reported(sqlite_ingest_app: Conveyor) -> None:
    from conveyor.ingest import Ingestion
    from conveyor.testing import drain

    seen: list[dict[str, object]] = []
    original = sqlite_ingest_app.backend.write_progress

    def spy(updates, now):  # type: ignore[no-untyped-def]
        seen.extend(u.info or {} for u in updates)
        return original(updates, now)

    sqlite_ingest_app.backend.write_progress = spy  # type: ignore[method-assign]
    text = "\n\n".join(f"Paragraph {i} about harbours, tides and the moon." * 8 for i in range(40))
    source, job = Ingestion(sqlite_ingest_app).add_text("ns", text)
    drain(sqlite_ingest_app)
    done = sqlite_ingest_app.require_job(job.id)
    assert done.progress == 100 and done.result["chunk_count"] > 1
    assert Ingestion(sqlite_ingest_app).get_source(source.id).status == "ready"
    stages = [info.get("stage") for info in seen]
    assert stages and set(stages) <= {"extracting", "chunking", "embedding", "storing", "ready"}
