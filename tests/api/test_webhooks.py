"""REST `/webhooks` (SPEC section 7) on a real server, both backends: create (secret shown once), list, patch, delete,
deliveries, test; bad input is 422 naming the field, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.api.conftest import RunningServer, start_server
from tests.webhooks.receiver import Receiver, serve_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


@pytest.fixture
def hook_server(db_url: str) -> Iterator[RunningServer]:
    settings = Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1, webhook_allow_private=True)
    conveyor = Conveyor(db_url, settings=settings)
    running = start_server(conveyor)
    yield running
    running.stop()
    conveyor.close()


@pytest.fixture
def api(hook_server: RunningServer) -> Iterator[httpx.Client]:
    with hook_server.client() as c:
        yield c


def test_webhook_lifecycle(api: httpx.Client, receiver: Receiver) -> None:
    created = api.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.completed"],
                                                 "filter": {"queue": "mail"}})
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_")
    assert hook["filter"] == {"type": None, "queue": "mail", "tag": None}
    listed = api.get("/api/v1/webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [hook["id"]]
    assert "secret" not in listed[0] or listed[0]["secret"] is None  # shown once only
    assert api.get(f"/api/v1/webhooks/{hook['id']}").json()["url"] == receiver.url

    patched = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"paused": True, "events": ["job.failed"],
                                                              "filter": {"queue": None, "tag": "x"}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["paused"], body["events"], body["filter"]) == (True, ["job.failed"],
                                                                {"type": None, "queue": None, "tag": "x"})
    assert body["paused_reason"] == "paused by hand"
    resumed = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"paused": False}).json()
    assert (resumed["paused"], resumed["paused_reason"]) == (False, None)

    tested = api.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is True and tested.json()["status_code"] == 200
    [request] = receiver.requests
    assert Verifier(hook["secret"]).verify(request.body, request.headers)["type"] == "webhook.test"
    deliveries = api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    assert [(d["event"], d["status_code"], d["attempt"], d["error"]) for d in deliveries] == [
        ("webhook.test", 200, 1, None)
    ]
    assert deliveries[0]["at"]

    assert api.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert api.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert api.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["job.completed"]}, "url"),
        ({"url": "file:///etc/passwd", "events": ["job.completed"]}, "url"),
        ({"url": "http://example.com/", "events": []}, "events"),
        ({"url": "http://example.com/", "events": ["job.exploded"]}, "events"),
        ({"url": "http://example.com/", "events": ["job.completed"], "secret": "hunter2"}, "secret"),
        ({"url": "http://example.com/", "events": ["job.completed"], "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"url": "http://example.com/", "events": ["job.completed"], "filter": {"color": "red"}}, "filter"),
        ({"url": "http://example.com/", "events": ["job.completed"], "extra": 1}, "extra"),
    ],
)
def test_bad_subscriptions_are_422_naming_the_field(api: httpx.Client, body: dict[str, object], field: str) -> None:
    answer = api.post("/api/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["message"]
    assert api.get("/api/v1/webhooks").json()["webhooks"] == []


def test_private_addresses_are_refused_unless_allowed(sqlite_url: str) -> None:
    conveyor = Conveyor(sqlite_url, settings=Settings(poll_interval_s=0.1))
    running = start_server(conveyor)
    try:
        with running.client() as api:
            for url in ["http://127.0.0.1/", "http://169.254.169.254/", "http://localhost/", "http://192.168.1.1/"]:
                answer = api.post("/api/v1/webhooks", json={"url": url, "events": ["job.completed"]})
                assert answer.status_code == 422, (url, answer.text)
                assert "url" in answer.json()["error"]["message"]
                assert "CONVEYOR_WEBHOOK_ALLOW_PRIVATE" in answer.json()["error"]["message"]
            assert api.get("/api/v1/webhooks").json()["webhooks"] == []
    finally:
        running.stop()
        conveyor.close()


def test_enqueue_takes_a_webhook_url(api: httpx.Client, hook_server: RunningServer) -> None:
    hook_server.conveyor.task(name="noop")(lambda: None)
    bad = api.post("/api/v1/jobs", json={"type": "noop", "webhook_url": "ftp://example.com/"})
    assert bad.status_code == 422 and "webhook_url" in bad.json()["error"]["message"]
    good = api.post("/api/v1/jobs", json={"type": "noop", "webhook_url": "https://example.com/hook"})
    assert good.status_code == 201, good.text
    assert good.json()["webhook_url"] == "https://example.com/hook"
    read = api.get(f"/api/v1/jobs/{good.json()['id']}").json()
    assert read["webhook_url"] == "https://example.com/hook"
    plain = api.post("/api/v1/jobs", json={"type": "noop"}).json()
    assert "webhook_url" in plain and plain["webhook_url"] is None
    listed = {j["id"]: j["webhook_url"] for j in api.get("/api/v1/jobs").json()["jobs"]}
    assert listed == {read["id"]: "https://example.com/hook", plain["id"]: None}


def test_unknown_webhook_is_404(api: httpx.Client) -> None:
    for method, path in [("GET", "/x"), ("PATCH", "/x"), ("DELETE", "/x"), ("POST", "/x/test"),
                         ("GET", "/00000000-0000-7000-8000-000000000000/deliveries")]:
        kwargs = {"json": {"paused": True}} if method == "PATCH" else {}
        answer = api.request(method, f"/api/v1/webhooks{path}", **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "not_found"


def test_the_job_secret_is_shown(api: httpx.Client, hook_server: RunningServer, receiver: Receiver) -> None:
    """GET /webhooks/job-secret: what signs deliveries to jobs' own webhook_url (generated, stored, stable)."""
    from tests.webhooks.test_service import drain

    answer = api.get("/api/v1/webhooks/job-secret")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["secret"].startswith("whsec_") and shown["source"] == "generated"
    assert api.get("/api/v1/webhooks/job-secret").json() == shown
    app = hook_server.conveyor
    app.task(name="noop")(lambda: None)
    job = api.post("/api/v1/jobs", json={"type": "noop", "webhook_url": receiver.url}).json()
    app.run_worker(burst=True)
    assert drain(app) == 1
    [sent] = receiver.requests
    assert Verifier(shown["secret"]).verify(sent.body, sent.headers)["data"]["id"] == job["id"]
