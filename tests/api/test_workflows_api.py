"""`/workflows` and `depends_on` over real HTTP on both backends: a round trip, filters, cancel and retry, and bad
input answered 422 naming the field or step with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import RunningServer
from tests.api.test_jobs_api import assert_error

UNKNOWN = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def api(backend_server: RunningServer) -> Iterator[httpx.Client]:
    with backend_server.client() as c:
        yield c


def test_depends_on_over_rest(api: httpx.Client, backend_server: RunningServer) -> None:
    parent = api.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"n": 1}}).json()
    r = api.post("/api/v1/jobs", json={"type": "demo.echo", "depends_on": [parent["id"]]})
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["status"] == "waiting" and child["depends_on"] == [parent["id"]]
    assert child["workflow_id"] is None and child["step"] is None
    listed = api.get("/api/v1/jobs", params={"status": "waiting"}).json()["jobs"]
    assert [j["id"] for j in listed] == [child["id"]]
    assert api.get("/api/v1/stats").json()["counts"]["waiting"] == 1
    batch = api.post("/api/v1/jobs/batch", json={"jobs": [{"type": "demo.echo", "depends_on": [child["id"]]}]})
    assert batch.status_code == 201 and batch.json()["jobs"][0]["status"] == "waiting"

    backend_server.conveyor.run_worker(concurrency=2, burst=True)
    events = api.get(f"/api/v1/jobs/{child['id']}/events").json()["events"]
    assert [(e["from_status"], e["to_status"]) for e in events][:2] == [(None, "waiting"), ("waiting", "pending")]
    assert api.get(f"/api/v1/jobs/{batch.json()['jobs'][0]['id']}").json()["status"] == "completed"


def test_an_unknown_parent_is_422_and_nothing_is_stored(api: httpx.Client) -> None:
    for body in ({"type": "demo.echo", "depends_on": [UNKNOWN]}, {"type": "demo.echo", "depends_on": ["x"]}):
        error = assert_error(api.post("/api/v1/jobs", json=body), 422)
        assert "depends_on" in error["message"]
    batch = {"jobs": [{"type": "demo.echo"}, {"type": "demo.echo", "depends_on": [UNKNOWN]}]}
    assert "jobs[1]" in assert_error(api.post("/api/v1/jobs/batch", json=batch), 422)["message"]
    assert api.get("/api/v1/jobs").json()["jobs"] == []


def test_a_workflow_round_trip(api: httpx.Client, backend_server: RunningServer) -> None:
    body = {
        "name": "report",
        "metadata": {"project": 42},
        "steps": [
            {"name": "a", "type": "demo.echo", "args": {"n": 1}},
            {"name": "b", "type": "demo.echo", "args": {"n": 2}},
            {"name": "join", "type": "demo.echo", "after": ["a", "b"], "priority": 5, "tags": ["wf"]},
        ],
    }
    r = api.post("/api/v1/workflows", json=body)
    assert r.status_code == 201, r.text
    wf = r.json()
    assert (wf["name"], wf["status"], wf["steps_total"], wf["steps_done"]) == ("report", "running", 3, 0)
    assert wf["metadata"] == {"project": 42} and wf["completed_at"] is None
    steps = {s["step"]: s for s in wf["steps"]}
    assert sorted(steps["join"]["depends_on"]) == sorted([steps["a"]["id"], steps["b"]["id"]])
    assert steps["join"]["status"] == "waiting" and steps["join"]["priority"] == 5
    assert all(s["workflow_id"] == wf["id"] for s in wf["steps"])

    listed = api.get("/api/v1/workflows", params={"status": "running", "name": "report"}).json()["workflows"]
    assert [w["id"] for w in listed] == [wf["id"]] and "steps" not in listed[0]
    assert api.get("/api/v1/workflows", params={"name": "other"}).json()["workflows"] == []

    backend_server.conveyor.run_worker(concurrency=2, burst=True)
    done = api.get(f"/api/v1/workflows/{wf['id']}").json()
    assert done["status"] == "completed" and done["steps_done"] == 3 and done["completed_at"] is not None
    assert_error(api.post(f"/api/v1/workflows/{wf['id']}/cancel"), 409)
    assert_error(api.post(f"/api/v1/workflows/{wf['id']}/retry"), 409)
    assert_error(api.get(f"/api/v1/workflows/{UNKNOWN}"), 404)


def test_cancel_and_retry_over_rest(api: httpx.Client) -> None:
    body = {"name": "later", "steps": [{"name": "a", "type": "demo.echo", "delay": 3600},
                                       {"name": "b", "type": "demo.echo", "after": ["a"]}]}
    wf = api.post("/api/v1/workflows", json=body).json()
    cancelled = api.post(f"/api/v1/workflows/{wf['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {s["status"] for s in cancelled.json()["steps"]} == {"cancelled"}
    retried = api.post(f"/api/v1/workflows/{wf['id']}/retry").json()
    assert retried["status"] == "running"
    assert {s["step"]: s["status"] for s in retried["steps"]} == {"a": "pending", "b": "waiting"}


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        ([{"name": "a", "type": "demo.echo", "after": ["b"]}, {"name": "b", "type": "demo.echo", "after": ["a"]}],
         "cycle"),
        ([{"name": "a", "type": "demo.echo", "after": ["a"]}], "'a'"),
        ([{"name": "a", "type": "demo.echo"}, {"name": "a", "type": "demo.echo"}], "duplicate"),
        ([{"name": "a", "type": "demo.echo", "after": ["elsewhere"]}], "'elsewhere'"),
        ([{"name": "a", "type": "nope"}], "step 'a'"),
        ([{"name": "a", "type": "demo.sleep", "args": {"seconds": "long"}}], "step 'a'"),
        ([{"name": "x" * 300, "type": "demo.echo"}], "steps.0.name"),
        ([], "steps"),
    ],
    ids=["cycle", "self", "duplicate", "unknown-step", "unknown-type", "bad-args", "long-name", "no-steps"],
)
def test_a_bad_workflow_is_422_and_nothing_is_stored(api: httpx.Client, steps: list[object], needle: str) -> None:
    error = assert_error(api.post("/api/v1/workflows", json={"name": "bad", "steps": steps}), 422)
    assert needle in error["message"], error
    assert api.get("/api/v1/workflows").json()["workflows"] == []
    assert api.get("/api/v1/jobs").json()["jobs"] == []


def test_stats_and_metrics_count_workflows_by_status(api: httpx.Client, backend_server: RunningServer) -> None:
    for name in ("one", "two"):
        api.post("/api/v1/workflows", json={"name": name, "steps": [{"name": "a", "type": "demo.echo"}]})
    stats = api.get("/api/v1/stats").json()
    assert stats["workflows"] == {"running": 2, "completed": 0, "failed": 0, "cancelled": 0}
    backend_server.conveyor.run_worker(concurrency=2, burst=True)
    assert api.get("/api/v1/stats").json()["workflows"]["completed"] == 2
    metrics = api.get("/metrics").text
    assert 'conveyor_workflows{status="completed"} 2.0' in metrics
    assert 'conveyor_workflows{status="running"} 0.0' in metrics
    assert 'conveyor_jobs{status="waiting",type="demo.echo"} 0.0' in metrics


def test_the_step_schema_lists_only_what_a_step_accepts(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/workflows"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    components = schema["components"]["schemas"]
    workflow = components[body["$ref"].rsplit("/", 1)[-1]]
    step = components[workflow["properties"]["steps"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert {"name", "type", "args", "after", "queue", "priority", "group_key"} <= set(step["properties"])
    assert not {"depends_on", "unique_key"} & set(step["properties"]), sorted(step["properties"])

    # sent anyway, they are refused, naming the step and the option, and nothing is stored
    parent = api.post("/api/v1/jobs", json={"type": "demo.echo"}).json()
    for option in ({"depends_on": [parent["id"]]}, {"unique_key": "k"}):
        steps = [{"name": "a", "type": "demo.echo", **option}]
        error = assert_error(api.post("/api/v1/workflows", json={"name": "bad", "steps": steps}), 422)
        assert "step 'a'" in error["message"] and next(iter(option)) in error["message"], error
    assert api.get("/api/v1/workflows").json()["workflows"] == []
    assert [j["id"] for j in api.get("/api/v1/jobs").json()["jobs"]] == [parent["id"]]
