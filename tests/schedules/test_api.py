"""`/api/v1/schedules` over real HTTP on both backends, with the 409 and 422 cases (nothing stored)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.api.conftest import start_server
from tests.api.test_jobs_api import assert_error


@pytest.fixture
def client(db_url: str, settings: Settings) -> Iterator[httpx.Client]:
    conveyor = Conveyor(db_url, settings=settings)
    running = start_server(conveyor)
    with running.client() as c:
        c.base_url = httpx.URL(running.url + "/api/v1")
        yield c
    running.stop()
    conveyor.close()


NEW = {"name": "nightly", "task": "demo.echo", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "args": {"x": 1}}


def test_create_list_get_patch_trigger_delete(client: httpx.Client) -> None:
    made = client.post("/schedules", json=NEW)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["name"] == "nightly" and body["description"] == "At 03:00 AM"
    assert body["next_run_at"].endswith(("01:00:00Z", "02:00:00Z")), "03:00 in Berlin is 01:00 or 02:00 UTC"
    assert (body["paused"], body["catch_up"], body["tags"], body["last_job_id"]) == (False, False, [], None)
    assert client.get("/schedules").json() == {"schedules": [body]}
    assert client.get("/schedules/nightly").json() == body
    assert_error(client.post("/schedules", json={**NEW, "cron": "* * * * *"}), 409, "invalid_state")

    patched = client.patch("/schedules/nightly", json={"paused": True, "priority": 5, "tags": ["cron"]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["paused"], patched.json()["priority"], patched.json()["next_run_at"]) == (True, 5, None)
    resumed = client.patch("/schedules/nightly", json={"paused": False, "cron": "*/5 * * * *"}).json()
    assert resumed["description"] == "Every 5 minutes" and resumed["next_run_at"] is not None

    job = client.post("/schedules/nightly/trigger")
    assert job.status_code == 201, job.text
    assert job.json()["type"] == "demo.echo" and job.json()["args"] == {"x": 1}
    assert job.json()["metadata"]["schedule"] == "nightly" and job.json()["priority"] == 5
    assert client.get("/schedules/nightly").json()["last_job_id"] == job.json()["id"]

    assert client.delete("/schedules/nightly").status_code == 204
    assert_error(client.get("/schedules/nightly"), 404, "not_found")
    assert_error(client.delete("/schedules/nightly"), 404)
    assert_error(client.patch("/schedules/nightly", json={"paused": True}), 404)
    assert_error(client.post("/schedules/nightly/trigger"), 404)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"task": "no.such.task"}, "task"),
        ({"name": "n" * 300}, "name"),
        ({"task": "demo.sleep", "args": {"seconds": "long"}}, "args"),
        ({"priority": "high"}, "priority"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_schedules_are_422_naming_the_field(client: httpx.Client, change: dict[str, object], field: str) -> None:
    error = assert_error(client.post("/schedules", json={**NEW, **change}), 422)
    assert error["message"].startswith(field), error
    assert client.get("/schedules").json() == {"schedules": []}


def test_a_bad_patch_changes_nothing(client: httpx.Client) -> None:
    before = client.post("/schedules", json=NEW).json()
    for change, field in [({"cron": "61 * * * *"}, "cron"), ({"timezone": "Nowhere"}, "timezone"),
                          ({"task": "nope"}, "task")]:
        error = assert_error(client.patch("/schedules/nightly", json=change), 422)
        assert error["message"].startswith(field), error
    assert client.get("/schedules/nightly").json() == before


def test_any_name_is_reachable(client: httpx.Client) -> None:
    assert client.post("/schedules", json={**NEW, "name": "team/a b"}).status_code == 201
    assert client.get("/schedules/team%2Fa%20b").json()["name"] == "team/a b"
    assert client.post("/schedules/team%2Fa%20b/trigger").status_code == 201
    assert client.patch("/schedules/team%2Fa%20b", json={"paused": True}).json()["paused"] is True
    assert client.delete("/schedules/team%2Fa%20b").status_code == 204
