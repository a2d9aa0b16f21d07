"""The sources page, when the built-in ingestion is installed."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("conveyor.ingest") is None, reason="the ingestion package is not installed"
)


def test_sources_page_adds_searches_and_deletes_a_source(server: Server, page: Any, artifacts: Path) -> None:
    page.goto(f"{server.url}/ui/sources")
    assert page.get_by_role("link", name="Sources").count() == 1
    form = page.locator('form[action="/ui/sources/text"]')
    form.get_by_label("Namespace", exact=True).fill("docs")
    form.get_by_label("Name", exact=True).fill("<i>intro</i>")
    form.get_by_label("Text").fill("Conveyor runs background jobs durably, with retries and progress.")
    form.get_by_role("button", name="Add text").click()
    page.locator("tr[data-source-id]").wait_for()
    assert page.locator("tr[data-source-id] .source-name").inner_text().startswith("<i>intro</i>")

    assert page.locator("tr[data-source-id] .badge").inner_text() == "pending"
    worker = threading.Thread(target=server.conveyor.run_worker, kwargs={"burst": True})
    worker.start()
    worker.join(timeout=60)
    page.locator("tr[data-source-id] .badge", has_text="ready").wait_for()  # followed without a reload
    assert int(page.locator("tr[data-source-id] [data-source-chunks]").inner_text()) >= 1

    page.get_by_label("Search query").fill("background jobs")
    page.get_by_role("button", name="Search").click()
    assert "background jobs" in page.locator(".results li").first.inner_text()
    page.screenshot(path=str(artifacts / "sources.png"), full_page=True)

    page.get_by_role("button", name="Delete source <i>intro</i>").click()
    page.locator("tr[data-source-id]").wait_for(state="detached")
    assert page.locator("i").count() == 0


def test_sources_page_uploads_a_file_and_refuses_a_private_website(
    server: Server, page: Any, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nQueues can be paused from the dashboard.\n", encoding="utf-8")
    page.goto(f"{server.url}/ui/sources")
    upload = page.locator('form[action="/ui/sources/file"]')
    upload.get_by_label("Namespace", exact=True).fill("handbook")
    upload.get_by_label("File").set_input_files(str(notes))
    upload.get_by_role("button", name="Upload").click()
    page.locator("tr[data-source-id]", has_text="notes.md").wait_for()
    sources = server.conveyor.list_jobs(type="process_file").jobs
    assert len(sources) == 1

    site = page.locator('form[action="/ui/sources/website"]')
    site.get_by_label("Namespace", exact=True).fill("handbook")
    site.get_by_label("URL").fill("http://127.0.0.1:9/")
    site.get_by_role("button", name="Crawl").click()
    assert page.locator(".flash").inner_text()  # the refusal, said on the page
    assert server.conveyor.list_jobs(type="crawl_website").jobs == []


def test_sources_page_says_when_the_hashing_fallback_is_in_use(
    server: Server, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setenv("CONVEYOR_EMBEDDER", "auto")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the `embed` extra were not installed
    page.goto(f"{server.url}/ui/sources")
    notice = page.locator("[data-embeddings]").inner_text()
    assert "hashing fallback in use" in notice and "pip install 'conveyor-jobs[embed]'" in notice
    monkeypatch.delitem(sys.modules, "onnxruntime")
    from conveyor.ingest import minilm_onnx

    if minilm_onnx.available():  # semantic embeddings: nothing to say
        page.goto(f"{server.url}/ui/sources")
        assert page.locator("[data-embeddings]").count() == 0


def test_a_website_source_links_its_pipeline(server: Server) -> None:
    import httpx

    from conveyor.ingest import Ingestion

    ingestion = Ingestion(server.conveyor)
    web, crawl = ingestion.add_website("web", "https://example.org/docs/", max_pages=3)
    text, _ = ingestion.add_text("web", "A text source has one job and no pipeline.")
    assert crawl.workflow_id is not None
    listed = httpx.get(f"{server.url}/ui/sources", params={"namespace": "web"})
    assert listed.status_code == 200
    assert listed.text.count("data-source-pipeline") == 1
    assert f'href="/ui/workflows/{crawl.workflow_id}"' in listed.text
    assert f"Pipeline of {web.name}" in listed.text and f"Pipeline of {text.name}" not in listed.text
    pipeline = httpx.get(f"{server.url}/ui/data/workflows/{crawl.workflow_id}").json()
    assert [s["step"] for s in pipeline["steps"]] == ["crawl", "ready"]
    assert pipeline["metadata"]["source_id"] == web.id
