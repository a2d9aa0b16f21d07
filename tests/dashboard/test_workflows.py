"""The workflows pages in a real browser (headless Chromium): the list with progress, and one workflow's graph laid
out by the vendored dagre, each step coloured by its state, followed live while a real worker runs it, with cancel
and retry."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from conveyor import Conveyor
from tests.dashboard.conftest import Server


def fan_in(conveyor: Conveyor, seconds: float) -> str:
    wf = conveyor.workflow("report")
    pages = [wf.step(f"fetch-{i}", "demo.sleep", seconds=seconds, steps=2) for i in range(3)]
    summary = wf.step("summarize", "demo.echo", after=pages, n=1)
    wf.step("notify", "demo.echo", after=[summary], n=2)
    return wf.enqueue().id


def node_class(page: Any, job_id: str) -> str:
    return str(page.locator(f'[data-node="{job_id}"]').get_attribute("class"))


def test_the_graph_is_drawn_and_follows_the_run(
    server: Server, worker: subprocess.Popen[bytes], page: Any, artifacts: Path
) -> None:
    server.conveyor.pause_queue("default")  # nothing runs until the page has drawn the graph (a loaded machine)
    workflow_id = fan_in(server.conveyor, 1.0)
    steps = {j.step: j.id for j in server.conveyor.require_workflow(workflow_id).steps or []}

    page.goto(f"{server.url}/ui/workflows/{workflow_id}")
    page.locator("[data-graph] svg").wait_for()
    assert page.locator("[data-graph] [data-node]").count() == 5
    assert page.locator("[data-graph] .wf-edge").count() == 4  # three fan-in edges and one to notify
    assert "s-waiting" in node_class(page, steps["notify"])
    assert page.locator(f'[data-node="{steps["fetch-0"]}"]').get_attribute("href") == f"/ui/jobs/{steps['fetch-0']}"
    server.conveyor.resume_queue("default")
    page.locator(f'[data-node="{steps["notify"]}"].s-completed').wait_for(timeout=30_000)
    page.locator('h1 [data-f="status"]', has_text="completed").wait_for()
    assert page.locator('[data-t="progress"]').inner_text() == "5/5"
    page.screenshot(path=str(artifacts / "workflow-page.png"), full_page=True)

    page.goto(f"{server.url}/ui/workflows")
    row = page.locator(f'tr[data-workflow-id="{workflow_id}"]')
    assert "completed" in row.inner_text() and "5/5" in row.inner_text()
    assert not page.js_errors, page.js_errors


def test_cancel_and_retry_from_the_page(server: Server, page: Any) -> None:
    wf = server.conveyor.workflow("later")
    first = wf.step("first", "demo.echo", n=1, options={"delay": 3600})
    wf.step("second", "demo.echo", after=[first], n=2)
    workflow_id = wf.enqueue().id

    page.goto(f"{server.url}/ui/workflows/{workflow_id}")
    page.locator("[data-graph] svg").wait_for()
    page.locator('form[data-action="cancel"] button').click()
    page.locator('h1 [data-f="status"]', has_text="cancelled").wait_for()
    assert server.conveyor.require_workflow(workflow_id).status == "cancelled"
    page.locator('form[data-action="retry"] button').click()
    page.locator('h1 [data-f="status"]', has_text="running").wait_for()
    assert server.conveyor.require_workflow(workflow_id).status == "running"
    assert not page.js_errors, page.js_errors


def test_the_pages_answer_without_a_browser(server: Server) -> None:
    workflow_id = fan_in(server.conveyor, 0.0)
    listed = httpx.get(f"{server.url}/ui/workflows")
    assert listed.status_code == 200 and workflow_id in listed.text and "0/5" in listed.text
    one = httpx.get(f"{server.url}/ui/workflows/{workflow_id}")
    assert one.status_code == 200 and "summarize" in one.text
    data = httpx.get(f"{server.url}/ui/data/workflows/{workflow_id}").json()
    assert data["steps_total"] == 5 and len(data["steps"]) == 5
    assert httpx.get(f"{server.url}/ui/workflows/01900000-0000-7000-8000-000000000000").status_code == 404
    step = server.conveyor.require_workflow(workflow_id).step("summarize")
    job_page = httpx.get(f"{server.url}/ui/jobs/{step.id}").text
    assert f'href="/ui/workflows/{workflow_id}"' in job_page and "summarize" in job_page
    assert all(f'href="/ui/jobs/{p}"' in job_page for p in step.depends_on)
    dagre = httpx.get(f"{server.url}/ui/static/dagre.esm.js")
    assert dagre.status_code == 200 and "text/javascript" in dagre.headers["content-type"]
