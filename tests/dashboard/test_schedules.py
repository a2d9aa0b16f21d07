"""The Schedules page: its table (cron in words, next and last run with the job's link), its buttons and its form,
over real HTTP with the CSRF token; and in a real browser where Chromium is installed."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import httpx

from tests.dashboard.conftest import Server


def _csrf(page: str) -> str:
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_schedules_page_adds_pauses_triggers_and_deletes(server: Server) -> None:
    schedules = server.conveyor.schedules
    with httpx.Client(base_url=server.url, timeout=30) as client:
        empty = client.get("/ui/schedules")
        assert empty.status_code == 200 and "No schedule yet" in empty.text
        assert 'href="/ui/schedules"' in client.get("/").text, "linked in the navigation"
        csrf = _csrf(empty.text)
        headers = {"Origin": server.url, "Accept": "application/json"}
        form = {"csrf": csrf, "name": "<b>tidy</b>", "task": "demo.echo", "cron": "*/5 * * * *",
                "timezone": "Europe/Berlin", "args": '{"x": 1}'}
        added = client.post("/ui/schedules", data=form, headers=headers)
        assert added.status_code == 200 and added.json()["ok"], added.text
        for bad, field in [({"cron": "61 * * * *"}, "cron"), ({"timezone": "Nowhere"}, "timezone"),
                           ({"args": "{oops"}, "args"), ({"task": "nope"}, "task")]:
            refused = client.post("/ui/schedules", data={**form, "name": "other", **bad}, headers=headers)
            assert refused.status_code == 422 and refused.json()["message"].startswith(field), refused.text
        again = client.post("/ui/schedules", data=form, headers=headers)
        assert again.status_code == 409 and "exists" in again.json()["message"]
        assert [s.name for s in schedules.all()] == ["<b>tidy</b>"]

        page = client.get("/ui/schedules").text
        assert "<b>tidy</b>" not in page and html.escape("<b>tidy</b>") in page, "names are escaped"
        assert "*/5 * * * *" in page and "Every 5 minutes" in page and "(Europe/Berlin)" in page
        action = "/ui/schedules/%3Cb%3Etidy%3C%2Fb%3E"
        assert f'action="{action}/pause"' in page

        paused = client.post(f"{action}/pause", data={"csrf": csrf}, headers=headers)
        assert paused.status_code == 200 and schedules.get("<b>tidy</b>").paused
        assert f'action="{action}/resume"' in client.get("/ui/schedules").text
        assert client.post(f"{action}/resume", data={"csrf": csrf}, headers=headers).status_code == 200
        assert not schedules.get("<b>tidy</b>").paused

        triggered = client.post(f"{action}/trigger", data={"csrf": csrf}, headers=headers)
        assert triggered.status_code == 200, triggered.text
        job_id = schedules.get("<b>tidy</b>").last_job_id
        assert job_id and f'href="/ui/jobs/{job_id}"' in client.get("/ui/schedules").text, "last run links its job"

        forged = client.post(f"{action}/delete", data={"csrf": "forged"}, headers=headers)
        assert forged.status_code == 403 and schedules.all()
        assert client.post(f"{action}/delete", data={"csrf": csrf}, headers=headers).status_code == 200
        assert schedules.all() == []
        missing = client.post(f"{action}/trigger", data={"csrf": csrf}, headers=headers)
        assert missing.status_code == 404


def test_schedules_page_in_a_browser(server: Server, page: Any, artifacts: Path) -> None:
    page.goto(f"{server.url}/ui/schedules")
    page.get_by_role("link", name="Schedules").first.wait_for()
    form = page.locator('form[action="/ui/schedules"]')
    form.get_by_label("Name").fill("hourly-echo")
    form.get_by_label("Task").select_option("demo.echo")
    form.get_by_label("Cron").fill("@hourly")
    form.get_by_role("button", name="Add schedule").click()
    row = page.locator('tr[data-schedule="hourly-echo"]')
    row.wait_for()
    assert row.locator("[data-cron-words]").inner_text() == "Every hour"
    page.get_by_role("button", name="Trigger schedule hourly-echo").click()
    page.locator('tr[data-schedule="hourly-echo"] [data-last-job]').wait_for()
    page.get_by_role("button", name="Pause schedule hourly-echo").click()
    page.locator('tr[data-schedule="hourly-echo"] [data-paused]').wait_for()
    page.screenshot(path=str(artifacts / "schedules.png"), full_page=True)
    page.get_by_role("button", name="Delete schedule hourly-echo").click()
    row.wait_for(state="detached")
    assert not page.js_errors
