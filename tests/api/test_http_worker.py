"""The HTTP worker protocol over real HTTP: claim, heartbeat with progress, complete, fail, and the lease guard."""

from __future__ import annotations

import time

import httpx

from tests.api.conftest import RunningServer
from tests.api.test_jobs_api import assert_error
from tests.conftest import wait_for


def test_http_worker_completes_a_job(client: httpx.Client, server: RunningServer) -> None:
    job = client.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"n": 7}}).json()
    claim = client.post("/api/v1/workers/claim", json={"types": ["demo.echo"], "limit": 3, "lease_s": 30}).json()
    worker_id = claim["worker_id"]
    assert worker_id and claim["lease_s"] == 30
    [claimed] = claim["jobs"]
    assert claimed["id"] == job["id"] and claimed["args"] == {"n": 7} and claimed["attempt"] == 1
    assert claimed["lease_expires_at"].endswith("Z")
    lease = {"worker_id": worker_id, "attempt": claimed["attempt"]}
    beat = client.post(f"/api/v1/jobs/{job['id']}/heartbeat",
                       json={**lease, "progress": 40, "progress_info": {"stage": "half"}})
    assert beat.status_code == 200, beat.text
    assert beat.json()["cancel_requested"] is False
    got = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert (got["status"], got["progress"], got["progress_info"], got["worker_id"]) == (
        "processing", 40, {"stage": "half"}, worker_id)
    done = client.post(f"/api/v1/jobs/{job['id']}/complete", json={**lease, "result": {"ok": True}})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed" and done.json()["result"] == {"ok": True}
    # Completing twice is a lost lease: the job is no longer processing.
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/complete", json={**lease, "result": 1}), 409, "lease_lost")
    # The next claim with the same id returns nothing more and keeps the worker registered.
    again = client.post("/api/v1/workers/claim", json={"worker_id": worker_id}).json()
    assert again == {"worker_id": worker_id, "lease_s": server.conveyor.settings.lease_s, "jobs": []}


def test_claim_filters_by_type_and_queue(client: httpx.Client) -> None:
    sleep = client.post("/api/v1/jobs", json={"type": "demo.sleep", "args": {"seconds": 1}}).json()
    echo = client.post("/api/v1/jobs", json={"type": "demo.echo", "queue": "other"}).json()
    assert client.post("/api/v1/workers/claim", json={"types": ["demo.fail"]}).json()["jobs"] == []
    assert client.post("/api/v1/workers/claim", json={"queues": ["nowhere"]}).json()["jobs"] == []
    by_queue = client.post("/api/v1/workers/claim", json={"queues": ["other"], "limit": 5}).json()["jobs"]
    assert [j["id"] for j in by_queue] == [echo["id"]]
    by_type = client.post("/api/v1/workers/claim", json={"types": ["demo.sleep"], "limit": 5}).json()["jobs"]
    assert [j["id"] for j in by_type] == [sleep["id"]]


def test_fail_with_and_without_retry(client: httpx.Client) -> None:
    job = client.post("/api/v1/jobs", json={"type": "demo.echo", "max_retries": 2}).json()
    [c] = client.post("/api/v1/workers/claim", json={"lease_s": 30}).json()["jobs"]
    wid = client.get(f"/api/v1/jobs/{job['id']}").json()["worker_id"]
    r = client.post(f"/api/v1/jobs/{job['id']}/fail",
                    json={"worker_id": wid, "attempt": c["attempt"], "error": "boom", "retry_after": 0})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "scheduled" and r.json()["error"] == "boom"
    claim = client.post("/api/v1/workers/claim", json={"lease_s": 30}).json()
    [c2] = claim["jobs"]
    assert c2["id"] == job["id"] and c2["attempt"] == 2
    r = client.post(f"/api/v1/jobs/{job['id']}/fail", json={"worker_id": claim["worker_id"], "attempt": 2,
                                                            "error": "fatal", "detail": "trace", "retry": False})
    assert r.json()["status"] == "failed" and r.json()["error_detail"] == "trace"


def test_late_completion_after_lease_expired_is_409(client: httpx.Client, server: RunningServer) -> None:
    app = server.conveyor
    job = client.post("/api/v1/jobs", json={"type": "demo.echo", "max_retries": 3}).json()
    first = client.post("/api/v1/workers/claim", json={"lease_s": 1}).json()
    [c1] = first["jobs"]
    lease1 = {"worker_id": first["worker_id"], "attempt": c1["attempt"]}
    time.sleep(1.2)  # the lease runs out (the worker "died"); the rescuer returns the job to the queue
    wait_for(lambda: app.backend.rescue_expired(app.clock()) or
             app.get_job(job["id"]).status.value == "pending", timeout=10)  # type: ignore[union-attr]
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "pending"
    # Heartbeat of the lost lease: 409 too.
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/heartbeat", json=lease1), 409, "lease_lost")
    second = client.post("/api/v1/workers/claim", json={"lease_s": 30}).json()
    [c2] = second["jobs"]
    assert c2["id"] == job["id"] and c2["attempt"] == 2
    late = client.post(f"/api/v1/jobs/{job['id']}/complete", json={**lease1, "result": "stale"})
    assert_error(late, 409, "lease_lost")
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/fail", json={**lease1, "error": "x"}), 409)
    ok = client.post(f"/api/v1/jobs/{job['id']}/complete",
                     json={"worker_id": second["worker_id"], "attempt": 2, "result": "fresh"})
    assert ok.status_code == 200 and ok.json()["result"] == "fresh"


def test_heartbeat_reports_cancel_request(client: httpx.Client) -> None:
    job = client.post("/api/v1/jobs", json={"type": "demo.sleep", "args": {"seconds": 5}}).json()
    claim = client.post("/api/v1/workers/claim", json={"lease_s": 30}).json()
    lease = {"worker_id": claim["worker_id"], "attempt": 1}
    client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert client.post(f"/api/v1/jobs/{job['id']}/heartbeat", json=lease).json()["cancel_requested"] is True
    # Completing a job whose cancellation was requested ends it cancelled, never completed.
    r = client.post(f"/api/v1/jobs/{job['id']}/complete", json={**lease, "result": 1})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_protocol_validation_errors(client: httpx.Client) -> None:
    assert_error(client.post("/api/v1/workers/claim", json={"limit": 0}), 422)
    assert_error(client.post("/api/v1/workers/claim", json={"lease_s": 0.1}), 422)
    assert_error(client.post("/api/v1/workers/claim", content=b"nope",
                             headers={"content-type": "application/json"}), 400)
    assert_error(client.post("/api/v1/jobs/missing/heartbeat", json={"worker_id": "w", "attempt": 1}), 404)
    assert_error(client.post("/api/v1/jobs/missing/complete", json={"worker_id": "w", "attempt": 1}), 404)
    assert_error(client.post("/api/v1/jobs/missing/complete", json={"worker_id": "w"}), 422)
    assert_error(client.post("/api/v1/jobs/missing/fail", json={"worker_id": "w", "attempt": 1}), 422)
