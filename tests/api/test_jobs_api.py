"""Every endpoint of SPEC section 4 over real HTTP, with every error code."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from conveyor.job import JobStatus
from tests.api.conftest import RunningServer


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return dict(body["error"])


def test_enqueue_get_and_defaults(client: httpx.Client) -> None:
    r = client.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"hello": "world"}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["type"] == "demo.echo" and job["status"] == "pending" and job["queue"] == "default"
    assert job["args"] == {"hello": "world"} and job["tags"] == [] and job["metadata"] == {}
    assert job["progress"] == 0 and job["attempts"] == 0 and job["result"] is None
    for field in ("id", "priority", "max_retries", "timeout", "run_at", "unique_key", "created_at", "updated_at",
                  "started_at", "completed_at", "worker_id", "error", "progress_info"):
        assert field in job
    got = client.get(f"/api/v1/jobs/{job['id']}")
    assert got.status_code == 200 and got.json()["id"] == job["id"]


def test_enqueue_options(client: httpx.Client) -> None:
    r = client.post(
        "/api/v1/jobs",
        json={"type": "demo.sleep", "args": {"seconds": 1}, "queue": "reports", "priority": 7, "max_retries": 1,
              "timeout": 9.5, "delay": 3600, "tags": ["project:42"], "metadata": {"who": "me"}},
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["queue"], job["priority"], job["max_retries"], job["timeout"]) == ("reports", 7, 1, 9.5)
    assert job["status"] == "scheduled" and job["tags"] == ["project:42"] and job["metadata"] == {"who": "me"}
    run_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = client.post("/api/v1/jobs", json={"type": "demo.echo", "run_at": run_at})
    assert r.status_code == 201 and r.json()["status"] == "scheduled"


def test_unique_key_returns_existing_with_200(client: httpx.Client) -> None:
    first = client.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"n": 1}, "unique_key": "k1"})
    assert first.status_code == 201
    again = client.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"n": 2}, "unique_key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_enqueue_errors(client: httpx.Client) -> None:
    assert_error(client.post("/api/v1/jobs", json={"type": "nope"}), 422, "unknown_task")
    assert_error(client.post("/api/v1/jobs", json={"type": "demo.sleep", "args": {"seconds": "x"}}), 422)
    assert_error(client.post("/api/v1/jobs", json={"args": {}}), 422)
    assert_error(client.post("/api/v1/jobs", json={"type": "demo.echo", "bogus": 1}), 422)
    assert_error(client.post("/api/v1/jobs", json={"type": "demo.echo", "priority": "high"}), 422)
    assert_error(client.post("/api/v1/jobs", json={"type": "demo.echo", "delay": 1, "run_at": "2030-01-01T00:00:00Z"}),
                 422)
    assert_error(client.post("/api/v1/jobs", json={"type": "demo.echo", "run_at": "2030-01-01T00:00:00"}), 422)
    # not JSON, or not an object: 400
    headers = {"content-type": "application/json"}
    assert_error(client.post("/api/v1/jobs", content=b"{not json", headers=headers), 400, "bad_request")
    assert_error(client.post("/api/v1/jobs", content=b"[1, 2]", headers=headers), 400, "bad_request")
    assert_error(client.post("/api/v1/jobs", content=b'"text"', headers=headers), 400, "bad_request")
    assert_error(client.post("/api/v1/jobs", content=b"", headers=headers), 400, "bad_request")


def test_body_too_large_is_413(client: httpx.Client) -> None:
    big = b'{"type": "demo.echo", "args": {"x": "' + b"a" * (17 * 1024 * 1024) + b'"}}'
    assert_error(client.post("/api/v1/jobs", content=big, headers={"content-type": "application/json"}), 413)

    def chunks() -> object:
        for _ in range(17):
            yield b"a" * (1024 * 1024)

    r = client.post("/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"})  # type: ignore[arg-type]
    assert_error(r, 413, "payload_too_large")


def test_batch_all_or_nothing(client: httpx.Client, server: RunningServer) -> None:
    r = client.post("/api/v1/jobs/batch", json={"jobs": [
        {"type": "demo.echo", "args": {"i": 1}},
        {"type": "demo.sleep", "args": {"seconds": 0.1}, "priority": 3, "tags": ["b"]},
    ]})
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    assert [j["type"] for j in jobs] == ["demo.echo", "demo.sleep"] and jobs[1]["priority"] == 3
    before = len(server.conveyor.list_jobs(limit=1000).jobs)
    bad = client.post("/api/v1/jobs/batch", json={"jobs": [
        {"type": "demo.echo", "args": {}},
        {"type": "demo.echo", "args": {}},
        {"type": "demo.sleep", "args": {"seconds": "zzz"}},
    ]})
    err = assert_error(bad, 422)
    assert "jobs[2]" in err["message"]
    unknown = client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "demo.echo"}, {"type": "missing"}]})
    assert "jobs[1]" in assert_error(unknown, 422)["message"]
    assert len(server.conveyor.list_jobs(limit=1000).jobs) == before
    assert_error(client.post("/api/v1/jobs/batch", json={"jobs": "no"}), 422)
    assert_error(client.post("/api/v1/jobs/batch", json=[]), 400)


def test_list_filters_paging_and_limit(client: httpx.Client, server: RunningServer) -> None:
    app = server.conveyor
    ids = [app.enqueue("demo.echo", {"i": i}, tags=["even"] if i % 2 == 0 else ["odd"]).id for i in range(7)]
    app.enqueue("demo.sleep", {"seconds": 1}, queue="slow")
    app.cancel(ids[0])
    r = client.get("/api/v1/jobs")
    assert r.status_code == 200
    body = r.json()
    assert body["next_cursor"] is None and len(body["jobs"]) == 8
    assert body["jobs"][-1]["id"] == ids[0]  # newest first
    assert [j["id"] for j in client.get("/api/v1/jobs", params={"tag": "even"}).json()["jobs"]] == \
        [ids[6], ids[4], ids[2], ids[0]]
    assert len(client.get("/api/v1/jobs", params={"queue": "slow"}).json()["jobs"]) == 1
    assert len(client.get("/api/v1/jobs", params={"type": "demo.echo"}).json()["jobs"]) == 7
    both = client.get("/api/v1/jobs", params=[("status", "cancelled"), ("status", "pending")]).json()["jobs"]
    assert len(both) == 8
    assert [j["id"] for j in client.get("/api/v1/jobs", params={"status": "cancelled"}).json()["jobs"]] == [ids[0]]
    # paging
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/jobs", params=params).json()  # type: ignore[arg-type]
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8 and len(set(seen)) == 8
    # limit is clamped, not refused
    assert client.get("/api/v1/jobs", params={"limit": 5000}).status_code == 200
    assert len(client.get("/api/v1/jobs", params={"limit": 0}).json()["jobs"]) == 1
    assert len(client.get("/api/v1/jobs", params={"limit": -5}).json()["jobs"]) == 1
    # unknown filter values are refused
    assert_error(client.get("/api/v1/jobs", params={"status": "weird"}), 422)
    assert_error(client.get("/api/v1/jobs", params={"limit": "many"}), 422)
    assert_error(client.get("/api/v1/jobs", params={"cursor": "not a cursor!"}), 422)
    assert_error(client.get("/api/v1/jobs", params={"cursor": "abc"}), 422)


def test_get_unknown_job_and_unknown_route(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/jobs/does-not-exist"), 404, "not_found")
    assert_error(client.get("/api/v1/jobs/does-not-exist/events"), 404)
    assert_error(client.post("/api/v1/jobs/does-not-exist/cancel"), 404)
    assert_error(client.post("/api/v1/jobs/does-not-exist/retry"), 404)
    assert_error(client.delete("/api/v1/jobs/does-not-exist"), 404)
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/nothing-here"), 404, "not_found")
    assert_error(client.put("/api/v1/jobs"), 405, "method_not_allowed")


def test_cancel_retry_delete_and_conflicts(client: httpx.Client, server: RunningServer) -> None:
    job = client.post("/api/v1/jobs", json={"type": "demo.echo"}).json()
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/cancel"), 409, "invalid_state")
    r = client.post(f"/api/v1/jobs/{job['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/retry"), 409)
    events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["events"]
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "pending"), ("pending", "cancelled"), ("cancelled", "pending")
    ]
    assert set(events[0]) == {"at", "from_status", "to_status", "worker_id", "message"}
    # a processing job cannot be deleted
    running = client.post("/api/v1/jobs", json={"type": "demo.sleep", "args": {"seconds": 30}}).json()
    claim = client.post("/api/v1/workers/claim", json={"types": ["demo.sleep"]}).json()
    assert [j["id"] for j in claim["jobs"]] == [running["id"]]
    assert_error(client.delete(f"/api/v1/jobs/{running['id']}"), 409)
    # cancelling a processing job requests it
    r = client.post(f"/api/v1/jobs/{running['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True and r.json()["status"] == "processing"
    r = client.delete(f"/api/v1/jobs/{job['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"/api/v1/jobs/{job['id']}"), 404)


def test_bulk(client: httpx.Client, server: RunningServer) -> None:
    app = server.conveyor
    ids = [app.enqueue("demo.echo", {"i": i}, tags=["bulk"]).id for i in range(4)]
    other = app.enqueue("demo.echo", {}, queue="other").id
    r = client.post("/api/v1/jobs/bulk", json={"action": "cancel", "ids": [*ids[:2], "missing"]})
    assert r.status_code == 200 and r.json() == {"affected": 2}
    r = client.post("/api/v1/jobs/bulk", json={"action": "retry", "filter": {"status": ["cancelled"]}})
    assert r.json() == {"affected": 2}
    r = client.post("/api/v1/jobs/bulk", json={"action": "cancel", "filter": {"tag": "bulk", "older_than": "0s"}})
    assert r.json() == {"affected": 4}
    r = client.post("/api/v1/jobs/bulk", json={"action": "delete", "filter": {"queue": "default", "tag": "bulk"}})
    assert r.json() == {"affected": 4}
    assert app.get_job(other) is not None and all(app.get_job(i) is None for i in ids)
    assert_error(client.post("/api/v1/jobs/bulk", json={"action": "explode", "ids": []}), 422)
    assert_error(client.post("/api/v1/jobs/bulk", json={"action": "cancel"}), 422)
    assert_error(client.post("/api/v1/jobs/bulk", json={"action": "cancel", "ids": [], "filter": {}}), 422)
    assert_error(client.post("/api/v1/jobs/bulk", json={"action": "cancel", "filter": {"status": ["nah"]}}), 422)
    assert_error(client.post("/api/v1/jobs/bulk", json={"action": "cancel", "filter": {"older_than": "soon"}}), 422)


def test_queues(client: httpx.Client, server: RunningServer) -> None:
    server.conveyor.enqueue("demo.echo", {}, queue="mail")
    queues = client.get("/api/v1/queues").json()["queues"]
    mail = next(q for q in queues if q["name"] == "mail")
    assert mail["counts"]["pending"] == 1 and mail["paused"] is False
    r = client.post("/api/v1/queues/mail/pause")
    assert r.status_code == 200 and r.json()["paused"] is True
    r = client.post("/api/v1/queues/mail/resume")
    assert r.json()["paused"] is False
    r = client.patch("/api/v1/queues/mail", json={"concurrency": 2, "rate_limit": 5.5, "paused": True})
    assert r.status_code == 200, r.text
    assert (r.json()["concurrency"], r.json()["rate_limit"], r.json()["paused"]) == (2, 5.5, True)
    r = client.patch("/api/v1/queues/mail", json={"concurrency": None})
    assert r.json()["concurrency"] is None and r.json()["rate_limit"] == 5.5 and r.json()["paused"] is True
    assert_error(client.patch("/api/v1/queues/mail", json={"concurrency": 0}), 422)
    assert_error(client.patch("/api/v1/queues/mail", json={"rate_limit": -1}), 422)
    assert_error(client.patch("/api/v1/queues/mail", json={"paused": None}), 422)
    assert_error(client.patch("/api/v1/queues/mail", json={"color": "red"}), 422)
    assert_error(client.patch("/api/v1/queues/mail", content=b"[]", headers={"content-type": "application/json"}), 400)


def test_stats_workers_health_metrics(client: httpx.Client, server: RunningServer) -> None:
    app = server.conveyor
    job = app.enqueue("demo.echo", {"x": 1})
    app.run_worker(concurrency=2, burst=True)
    assert app.get_job(job.id).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    stats = client.get("/api/v1/stats").json()
    assert stats["counts"]["completed"] == 1 and "demo.echo" in stats["durations"]
    assert set(stats) >= {"counts", "counts_by_type", "durations", "throughput", "workers"}
    assert client.get("/api/v1/workers").json() == {"workers": []}
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'conveyor_jobs{status="completed",type="demo.echo"} 1.0' in text
    assert 'conveyor_queue_depth{queue="default",status="pending"} 0.0' in text
    assert 'conveyor_job_duration_seconds_count{type="demo.echo"} 1.0' in text
    assert "conveyor_workers 0.0" in text
    assert 'conveyor_jobs_finished_total{status="completed"} 1.0' in text


def test_workers_lists_a_claiming_http_worker(client: httpx.Client) -> None:
    client.post("/api/v1/jobs", json={"type": "demo.echo"})
    claim = client.post("/api/v1/workers/claim", json={"queues": ["default"], "limit": 5, "lease_s": 30}).json()
    workers = client.get("/api/v1/workers").json()["workers"]
    assert [w["id"] for w in workers] == [claim["worker_id"]]
    w = workers[0]
    assert set(w) >= {"id", "host", "pid", "queues", "slots", "started_at", "heartbeat_at", "running"}
    assert w["queues"] == ["default"] and w["slots"] == 5 and w["running"] == [claim["jobs"][0]["id"]]


def test_openapi_and_docs(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v1/jobs" in schema["paths"] and "/api/v1/events" in schema["paths"]
    components = schema["components"]["schemas"]
    assert "Enqueue_demo.sleep" in components
    sleep_args = components["demo_sleep_args"]
    assert set(sleep_args["properties"]) == {"seconds", "steps"}
    body = schema["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Enqueue_demo.sleep"} in body["oneOf"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_time_fields_are_utc_iso(client: httpx.Client) -> None:
    job = client.post("/api/v1/jobs", json={"type": "demo.echo"}).json()
    created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
    assert created.tzinfo is not None and abs(created.timestamp() - time.time()) < 60
