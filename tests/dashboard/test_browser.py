"""The dashboard in real headless Chromium against the real server and a real worker process."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Conveyor, QueueInfo
from tests.conftest import wait_for
from tests.dashboard.conftest import HAS_API, Server

pytestmark = pytest.mark.slow


def wait_live(page: Any) -> None:
    """The page's event stream is open (the indicator says Live)."""
    page.locator("[data-live-text]", has_text="Live").wait_for(state="visible")


def row(page: Any, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def queue_of(server: Server, name: str) -> QueueInfo:
    return next(q for q in server.conveyor.list_queues() if q.name == name)


def drain(conveyor: Conveyor) -> None:
    """Run every ready job (a burst worker in a thread: Playwright owns this thread's event loop)."""
    thread = threading.Thread(target=conveyor.run_worker, kwargs={"concurrency": 4, "burst": True})
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_enqueued_job_appears_live_and_its_progress_moves(
    server: Server, worker: subprocess.Popen[bytes], page: Any, artifacts: Path
) -> None:
    earlier = [server.enqueue("demo.echo", {"n": i}, tags=["batch:7"] if i % 2 else []) for i in range(4)]
    earlier.append(server.enqueue("demo.fail", {"message": "upstream answered 502"}, max_retries=0))
    wait_for(lambda: all(server.status(j) in ("completed", "failed") for j in earlier), timeout=30, what="warm-up")
    page.goto(f"{server.url}/ui/jobs")
    wait_live(page)
    page.evaluate("window.__notReloaded = true")

    job_id = server.enqueue("demo.sleep", {"seconds": 8, "steps": 16}, tags=["demo:live"])

    line = row(page, job_id)
    line.wait_for(state="visible")
    line.locator('[data-f="status"]', has_text="processing").wait_for()
    progress = line.locator('progress[data-f="progress"]')
    progress.wait_for(state="visible")
    page.wait_for_function(
        "id => Number(document.querySelector(`tr[data-job-id='${id}'] progress`).value) > 0", arg=job_id
    )
    first = int(progress.evaluate("p => p.value"))
    page.wait_for_function(
        "([id, first]) => Number(document.querySelector(`tr[data-job-id='${id}'] progress`).value) > first",
        arg=[job_id, first],
    )
    assert int(progress.evaluate("p => p.value")) > first
    assert line.locator(".tag").inner_text() == "demo:live"
    page.screenshot(path=str(artifacts / "jobs-table.png"), full_page=True)

    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
    assert not page.js_errors, page.js_errors

    # The job's own page follows it live too, to the end.
    line.locator('[data-f="link"]').click()
    page.wait_for_url(f"{server.url}/ui/jobs/{job_id}")
    wait_live(page)
    big = page.locator('.progress-card progress[data-f="progress"]')
    shown = int(big.evaluate("p => p.value"))
    page.wait_for_function(
        "shown => Number(document.querySelector('.progress-card progress').value) > shown", arg=shown
    )
    page.locator('.job-head [data-f="status"]', has_text="completed").wait_for(timeout=30_000)
    page.locator("[data-timeline] li", has_text="processing → completed").wait_for()
    assert '"slept": 8' in page.locator('pre[data-t="result"]').inner_text()
    assert page.locator(".progress-card").is_hidden()
    assert server.status(job_id) == "completed"
    assert not page.js_errors, page.js_errors


def test_row_actions_cancel_retry_delete(server: Server, page: Any) -> None:
    keep = server.enqueue("demo.echo", {"n": 1})
    gone = server.enqueue("demo.echo", {"n": 2})
    page.goto(f"{server.url}/ui/jobs")
    wait_live(page)

    row(page, keep).locator('form[data-action="cancel"] button').click()
    row(page, keep).locator('[data-f="status"]', has_text="cancelled").wait_for()
    assert server.status(keep) == "cancelled"

    row(page, keep).locator('form[data-action="retry"] button').click()
    row(page, keep).locator('[data-f="status"]', has_text="pending").wait_for()
    assert server.status(keep) == "pending"

    row(page, gone).locator('form[data-action="delete"] button').click()
    row(page, gone).wait_for(state="detached")
    assert server.status(gone) is None
    assert server.status(keep) == "pending"

    # The same actions work from the job page.
    page.goto(f"{server.url}/ui/jobs/{keep}")
    page.locator('form[data-action="cancel"] button').click()
    page.locator('.job-head [data-f="status"]', has_text="cancelled").wait_for()
    assert server.status(keep) == "cancelled"
    page.locator("[data-timeline] li", has_text="pending → cancelled").wait_for()
    assert not page.js_errors, page.js_errors


def test_bulk_actions_on_a_selection_and_on_a_filter(server: Server, page: Any) -> None:
    failed = [server.enqueue("demo.fail", {"times": -1}, max_retries=0) for _ in range(2)]
    done = [server.enqueue("demo.echo", {"n": i}) for i in range(3)]
    drain(server.conveyor)
    waiting = [server.enqueue("demo.echo", {"w": i}) for i in range(3)]
    assert [server.status(j) for j in failed + done] == ["failed"] * 2 + ["completed"] * 3

    page.goto(f"{server.url}/ui/jobs")
    wait_live(page)
    for job_id in waiting[:2]:
        row(page, job_id).locator('input[name="ids"]').check()
    page.locator("[data-selected-count]", has_text="2 selected").wait_for()
    page.get_by_role("button", name="Cancel selected").click()
    wait_for(
        lambda: [server.status(j) for j in waiting] == ["cancelled", "cancelled", "pending"],
        timeout=30,
        what="bulk cancel",
    )
    row(page, waiting[0]).locator('[data-f="status"]', has_text="cancelled").wait_for()

    page.get_by_role("button", name="Retry all failed").click()
    wait_for(lambda: all(server.status(j) == "pending" for j in failed), timeout=30, what="retry all failed")

    page.get_by_role("button", name="Clear completed").click()
    wait_for(lambda: all(server.status(j) is None for j in done), timeout=30, what="clear completed")
    for job_id in done:
        row(page, job_id).wait_for(state="detached")
    assert server.status(waiting[2]) == "pending"
    assert not page.js_errors, page.js_errors


def test_pausing_a_queue_from_the_page_stops_claims(
    server: Server, worker: subprocess.Popen[bytes], page: Any, artifacts: Path
) -> None:
    server.enqueue("demo.echo", {"warm": "up"})  # the "default" queue is listed once it exists
    page.goto(f"{server.url}/")
    wait_live(page)
    page.get_by_role("button", name="Pause queue default").click()
    page.locator('tr[data-queue="default"] [data-paused-badge]').wait_for(state="visible")
    wait_for(lambda: queue_of(server, "default").paused, timeout=30, what="pause")

    held = server.enqueue("demo.echo", {"held": True})
    other = server.enqueue("demo.echo", {"other": True}, queue="other")
    # The worker claims in one pass over every queue: once the later job of another queue is done, it has seen
    # the paused one and left it.
    wait_for(lambda: server.status(other) == "completed", timeout=30, what="the other queue's job")
    assert server.status(held) == "pending"
    page.locator('tr[data-queue="default"] [data-qcount="pending"]', has_text="1").wait_for()
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    page.get_by_role("button", name="Resume queue default").click()
    wait_for(lambda: server.status(held) == "completed", timeout=30, what="the held job after resume")
    assert page.locator("[data-workers] .worker").count() == 1
    page.locator('[data-chart="throughput"] rect.bar-completed').first.wait_for(state="attached")
    page.locator('[data-chart="throughput"] [data-summary]', has_text="3 completed").wait_for()

    page.locator('tr[data-queue="default"] input[name="concurrency"]').fill("3")
    page.locator('tr[data-queue="default"] form.concurrency button').click()
    wait_for(lambda: queue_of(server, "default").concurrency == 3, timeout=30, what="the concurrency limit")
    assert not page.js_errors, page.js_errors


def test_job_page_shows_a_failed_jobs_error(
    server: Server, worker: subprocess.Popen[bytes], page: Any, artifacts: Path
) -> None:
    job_id = server.enqueue("demo.fail", {"message": "upstream answered 502", "times": -1}, max_retries=0)
    wait_for(lambda: server.status(job_id) == "failed", timeout=30, what="the job to fail")

    page.goto(f"{server.url}/ui/jobs/{job_id}")
    assert "upstream answered 502" in page.locator('[data-error-card] [data-t="error"]').inner_text()
    assert "RuntimeError" in page.locator('[data-t="error_detail"]').inner_text()
    assert page.locator('.job-head [data-f="status"]').inner_text() == "failed"
    assert page.locator("[data-timeline] li", has_text="processing → failed").count() == 1
    page.screenshot(path=str(artifacts / "job-page.png"), full_page=True)

    page.locator('form[data-action="retry"] button').click()
    page.locator("[data-timeline] li", has_text="failed → pending").wait_for()
    wait_for(lambda: server.status(job_id) == "failed", timeout=30, what="the retried job to fail again")
    page.locator('.job-head [data-f="status"]', has_text="failed").wait_for()
    assert not page.js_errors, page.js_errors


def test_script_in_args_shows_as_text(server: Server, page: Any) -> None:
    payload = "<script>window.__xss = 1</script><img src=x onerror='window.__xss = 2'>"
    first = server.enqueue("demo.echo", {"html": payload}, tags=["<b>tag</b>"])
    page.goto(f"{server.url}/ui/jobs/{first}")
    assert payload in page.locator('pre[data-t="args"]').inner_text()

    page.goto(f"{server.url}/ui/jobs")
    wait_live(page)
    second = server.enqueue("demo.echo", {"html": payload}, tags=["<b>tag</b>"])  # rendered by the live path
    row(page, second).wait_for()
    assert row(page, second).locator(".tag").inner_text() == "<b>tag</b>"
    assert row(page, first).locator(".tag").inner_text() == "<b>tag</b>"
    assert page.locator("img[src=x], b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_enqueue_form_builds_fields_from_the_schema(server: Server, page: Any) -> None:
    page.goto(f"{server.url}/ui/enqueue")
    page.get_by_label("Task").select_option("demo.sleep")
    page.locator('input[name="seconds"]').wait_for()
    assert page.locator('input[name="steps"]').get_attribute("step") == "1"
    page.locator('input[name="seconds"]').fill("0.5")
    page.locator('input[name="steps"]').fill("2")
    page.get_by_label("Priority").fill("7")
    page.get_by_label("Queue").fill("forms")
    page.get_by_label("Tags").fill("made:by-form, x")
    page.get_by_role("button", name="Enqueue", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    job = server.conveyor.get_job(job_id)
    assert job is not None
    assert (job.type, job.queue, job.priority, job.args) == ("demo.sleep", "forms", 7, {"seconds": 0.5, "steps": 2})
    assert job.tags == ["made:by-form", "x"]

    # The browser checks number fields itself; the server checks what the browser cannot.
    page.goto(f"{server.url}/ui/enqueue?type=demo.echo")
    page.locator('textarea[name="args_json"]').fill("{not json")
    page.get_by_role("button", name="Enqueue", exact=True).click()
    assert "arguments JSON" in page.locator(".alert-error").inner_text()
    assert page.locator('textarea[name="args_json"]').input_value() == "{not json"
    page.locator('textarea[name="args_json"]').fill('{"hello": "form"}')
    page.get_by_role("button", name="Enqueue", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/jobs/*")
    echo = server.conveyor.get_job(page.url.rsplit("/", 1)[1])
    assert echo is not None and echo.args == {"hello": "form"}


def test_with_a_token_pages_need_login_and_cross_site_posts_are_refused(
    make_server: Callable[..., Server], page: Any
) -> None:
    server = make_server(token="s3cret-token")
    job_id = server.conveyor.enqueue("demo.echo", {}).id

    page.goto(f"{server.url}/ui/jobs")
    assert "/ui/login" in page.url
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert "not right" in page.locator(".alert-error").inner_text()
    page.get_by_label("API token").fill("s3cret-token")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/ui/jobs")
    row(page, job_id).wait_for()

    cookie = next(c for c in page.context.cookies() if c["name"] == "conveyor_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "s3cret-token" not in cookie["value"]

    # A page of another site posts to an action: refused, the job untouched.
    evil = f"<form method=post action='{server.url}/ui/jobs/{job_id}/cancel'><input name=csrf value=x></form>"
    page.route("http://evil.test/", lambda route: route.fulfill(body=evil, content_type="text/html"))
    page.goto("http://evil.test/")
    with page.expect_response(lambda r: r.url.endswith("/cancel")) as answer:
        page.evaluate("document.forms[0].submit()")
    assert answer.value.status == 403
    assert server.status(job_id) == "pending"

    # Without the browser: the session alone is not enough, nor the token alone without the session.
    session = {"conveyor_session": cookie["value"]}
    with httpx.Client(base_url=server.url, cookies=session) as client:
        csrf = client.get("/ui/jobs").text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        url = f"/ui/jobs/{job_id}/cancel"
        assert client.post(url, data={"csrf": csrf}, headers={"Origin": "https://evil.test"}).status_code == 403
        assert client.post(url, data={"csrf": csrf}).status_code == 403  # no Origin nor Referer
        assert client.post(url, data={"csrf": "forged"}, headers={"Origin": server.url}).status_code == 403
        assert server.status(job_id) == "pending"
        ok = client.post(url, data={"csrf": csrf}, headers={"Origin": server.url, "Accept": "application/json"})
        assert ok.status_code == 200 and ok.json()["job"]["status"] == "cancelled"
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/ui/events").status_code == 401
        assert anonymous.get("/ui/data/overview").status_code == 401
        assert anonymous.get("/").status_code == 303
        refused = anonymous.post(f"/ui/jobs/{job_id}/retry", headers={"Origin": server.url})
        assert refused.status_code == 401
    assert server.status(job_id) == "cancelled"
    if HAS_API:  # the REST API takes the same session cookie (the browser cannot send a Bearer header on SSE)
        assert httpx.get(f"{server.url}/api/v1/jobs/{job_id}", cookies=session).status_code == 200
        assert httpx.get(f"{server.url}/api/v1/jobs/{job_id}").status_code == 401

    # Logging out ends the browser's session.
    page.goto(f"{server.url}/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{server.url}/ui/login")
    assert not [c for c in page.context.cookies() if c["name"] == "conveyor_session"]
    page.goto(f"{server.url}/ui/jobs")
    assert "/ui/login" in page.url


def test_pages_carry_a_content_security_policy(server: Server) -> None:
    response = httpx.get(f"{server.url}/ui/jobs")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in response.text  # no inline script: only `<script type="module" src=...>` and JSON data


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(el => !el.closest('template') && el.offsetParent !== null)
    .filter(el => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
    .map(el => el.outerHTML)"""


def test_keyboard_only_use_and_labelled_controls(server: Server, page: Any) -> None:
    job_id = server.enqueue("demo.echo", {"k": 1})
    page.goto(f"{server.url}/ui/jobs")
    wait_live(page)
    assert page.evaluate(UNLABELLED) == []
    target = f"Cancel job {job_id}"
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == target:
            break
    else:
        pytest.fail("the row's Cancel button is not reachable with Tab")
    page.keyboard.press("Enter")
    row(page, job_id).locator('[data-f="status"]', has_text="cancelled").wait_for()
    assert server.status(job_id) == "cancelled"
    for path in ("/", f"/ui/jobs/{job_id}", "/ui/enqueue"):
        page.goto(server.url + path)
        assert page.evaluate(UNLABELLED) == [], path


def test_phone_width_and_dark_mode(server: Server, browser: Any, artifacts: Path) -> None:
    for i in range(3):
        server.enqueue("demo.echo", {"i": i}, tags=["team:mobile"], queue="a-rather-long-queue-name")
    phone = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        for name, path in (("overview", "/"), ("jobs", "/ui/jobs")):
            page.goto(server.url + path)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
            page.screenshot(path=str(artifacts / f"{name}-phone.png"), full_page=True)
    finally:
        phone.close()
    dark = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark")
    try:
        page = dark.new_page()
        page.goto(f"{server.url}/ui/jobs")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3])
        assert red + green + blue < 120, background
        page.screenshot(path=str(artifacts / "jobs-dark.png"), full_page=True)
    finally:
        dark.close()


def test_filters_search_and_pagination(server: Server, page: Any) -> None:
    jobs = server.conveyor.enqueue_many("demo.echo", [{"i": i} for i in range(55)], tags=["bulk:1"])
    odd = server.conveyor.enqueue("demo.sleep", {"seconds": 1}, queue="slow", delay=3600)
    page.goto(f"{server.url}/ui/jobs")
    assert page.locator("tbody[data-rows] tr").count() == 50
    page.get_by_role("link", name="Older →").click()
    assert page.locator("tbody[data-rows] tr").count() == 6
    assert row(page, jobs[0].id).count() == 1
    page.get_by_role("link", name="← Newest").click()
    assert row(page, odd.id).count() == 1

    page.get_by_role("link", name="Scheduled 1").click()
    assert page.locator("tbody[data-rows] tr").count() == 1
    assert "starts in" in row(page, odd.id).locator('[data-t="ran"]').inner_text()
    page.goto(f"{server.url}/ui/jobs")
    page.get_by_label("Queue").select_option("slow")
    page.get_by_role("button", name="Apply").click()
    assert page.locator("tbody[data-rows] tr").count() == 1
    # The status tabs count within the queue filter.
    assert page.locator('.status-tabs [data-count="scheduled"]').inner_text() == "1"
    assert page.locator('.status-tabs [data-count="pending"]').inner_text() == "0"
    page.get_by_label("Tag").fill("bulk:1")
    page.get_by_label("Queue").select_option("")
    page.get_by_label("Type").select_option("demo.echo")
    page.get_by_role("button", name="Apply").click()
    assert page.locator("tbody[data-rows] tr").count() == 50 and row(page, odd.id).count() == 0
    assert page.locator(".status-tabs [data-count]").count() == 0  # no cheap count by tag
    page.goto(f"{server.url}/ui/jobs?type=demo.echo")
    assert page.locator('.status-tabs [data-count="pending"]').inner_text() == "55"

    page.get_by_label("Find a job by id").fill(odd.id)
    page.get_by_label("Find a job by id").press("Enter")
    page.wait_for_url(f"{server.url}/ui/jobs/{odd.id}")
    page.goto(f"{server.url}/ui/jobs?q=no-such-job")
    assert "No job has the id" in page.locator(".alert").inner_text()
