"""A website crawl is a workflow on both backends: the step `crawl`, one step per fetched page (added by the crawl as it
fetches), and the step `ready` after them all, which alone marks the source `ready`; a page's step that does not
complete fails the source, naming it."""

from __future__ import annotations

from conveyor import Conveyor, JobStatus
from conveyor.ingest import Ingestion
from conveyor.testing import drain
from conveyor.workflows import WorkflowStatus
from tests.ingest.conftest import Site


def test_a_crawl_is_a_workflow_of_one_step_per_page_and_a_final_step(
    ingestion: Ingestion, ingest_app: Conveyor, site: Site
) -> None:
    source, job = ingestion.add_website("web", site.base + "/", max_pages=5)
    assert job.type == "crawl_website" and job.step == "crawl" and job.workflow_id is not None
    run = ingest_app.require_workflow(job.workflow_id)
    assert run.name == "crawl_website" and run.metadata["source_id"] == source.id
    assert [(s.step, s.type, s.status) for s in run.steps or []] == [
        ("crawl", "crawl_website", JobStatus.PENDING), ("ready", "finish_crawl", JobStatus.WAITING)]

    assert drain(ingest_app, max_jobs=1) == 1  # the crawl alone: every page fetched, none stored yet
    crawled = ingest_app.require_workflow(run.id)
    pages = [f"page-{i}" for i in range(1, 6)]
    assert [s.step for s in crawled.steps or []] == ["crawl", "ready", *pages]
    assert crawled.status is WorkflowStatus.RUNNING and (crawled.steps_total, crawled.steps_done) == (7, 1)
    assert ingestion.get_source(source.id).status == "processing"
    ready = crawled.step("ready")
    assert ready.status is JobStatus.WAITING
    assert sorted(ready.depends_on) == sorted(crawled.step(n).id for n in ["crawl", *pages])
    assert crawled.step("page-1").status is JobStatus.PENDING and crawled.step("page-1").args["replace"] is True
    for name in pages[1:]:  # after the first page's step, which replaces an earlier crawl's chunks
        assert crawled.step(name).depends_on == [crawled.step("page-1").id]
    assert {crawled.step(n).args["url"] for n in pages} == {site.base + p for p in site.pages_fetched()}
    assert all(f"source:{source.id}" in s.tags for s in crawled.steps or [])

    drain(ingest_app)

    done = ingest_app.require_workflow(run.id)
    assert done.status is WorkflowStatus.COMPLETED and done.steps_done == 7
    finished = done.step("ready")
    assert finished.started_at is not None
    assert all((done.step(n).completed_at or finished.started_at) <= finished.started_at for n in pages)
    assert finished.result == {"source_id": source.id, "chunk_count": 5, "pages": 5}
    ready_source = ingestion.get_source(source.id)
    assert ready_source.status == "ready" and ready_source.chunk_count == 5
    assert sorted(c["chunk_index"] for c in ingestion.store.source_chunks(source.id)) == [0, 1, 2, 3, 4]
    assert {j.id for j in ingestion.source_jobs(source.id)} == {s.id for s in done.steps or []}


def test_a_page_step_that_does_not_complete_fails_the_source_naming_it(
    ingestion: Ingestion, ingest_app: Conveyor, site: Site
) -> None:
    source, job = ingestion.add_website("web", site.base + "/", max_pages=3)
    drain(ingest_app, max_jobs=1)
    assert job.workflow_id is not None
    page = ingest_app.get_workflow_step(job.workflow_id, "page-2")
    assert page is not None
    ingest_app.cancel(page.id)

    failed = ingestion.get_source(source.id)
    assert failed.status == "failed" and "page-2" in (failed.error or ""), failed.error
    assert ingestion.wait(source.id, timeout=5).status == "failed"
    drain(ingest_app)
    assert ingest_app.require_workflow(job.workflow_id).status is WorkflowStatus.FAILED
    assert ingestion.get_source(source.id).status == "failed"

    # retrying the workflow runs the page and the final step again: pending meanwhile, then ready
    assert ingest_app.retry_workflow(job.workflow_id).status is WorkflowStatus.RUNNING
    assert ingestion.get_source(source.id).status == "pending"
    drain(ingest_app)
    again = ingestion.get_source(source.id)
    assert again.status == "ready" and again.chunk_count == 3, again
    assert site.fetched("/") == 1  # the crawl itself completed: not run again


def test_a_crawl_job_outside_a_workflow_indexes_its_pages_itself(
    ingestion: Ingestion, ingest_app: Conveyor, site: Site
) -> None:
    """A `crawl_website` job enqueued by hand (or before crawls were workflows) still does the whole work."""
    source, job = ingestion.add_website("web", site.base + "/", max_pages=3)
    assert job.workflow_id is not None
    ingest_app.cancel_workflow(job.workflow_id)
    alone = ingest_app.enqueue("crawl_website", {"source_id": source.id})
    drain(ingest_app)
    done = ingest_app.require_job(alone.id)
    assert done.status is JobStatus.COMPLETED and done.result["pages"] == 3 and done.result["chunk_count"] == 3
    assert ingest_app.list_jobs(type="index_page").jobs == []
    assert len(ingestion.store.source_chunks(source.id)) == 3


def test_the_cli_waits_for_the_crawls_last_step_not_only_the_crawl(
    ingestion: Ingestion, ingest_app: Conveyor, site: Site
) -> None:
    """`conveyor ingest url` returns once the source is ready: after the step `ready`, which runs after the crawl (the
    command once returned when the crawl alone had ended, printing `processing`)."""
    import pytest
    import typer

    from conveyor.ingest.cli import _wait

    source, job = ingestion.add_website("web", site.base + "/", max_pages=2)
    drain(ingest_app, max_jobs=3)  # the crawl and its two pages: the step `ready` has not run
    assert ingest_app.require_job(job.id).status is JobStatus.COMPLETED
    with pytest.raises(typer.Exit) as waited:
        _wait(ingest_app, ingestion, source, job, 0.5, show_bar=False)
    assert waited.value.exit_code == 3  # timed out, still processing
    drain(ingest_app)
    done = _wait(ingest_app, ingestion, source, job, 5, show_bar=False)
    assert done.status == "ready" and done.chunk_count == 2
