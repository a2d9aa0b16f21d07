"""REST of fair limits per key: `group_key` on enqueue, the queue's group limits, a queue's keys and a key's own
limits; bad input is a 422 that stores nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import RunningServer
from tests.api.test_jobs_api import assert_error


def test_keys_of_a_queue_and_their_overrides(client: httpx.Client) -> None:
    r = client.post("/api/v1/jobs/batch", json={"jobs": [
        {"type": "demo.echo", "args": {"i": i}, "queue": "mail", "group_key": "tenant:a" if i < 3 else "tenant:b"}
        for i in range(5)]})
    assert r.status_code == 201 and [j["group_key"] for j in r.json()["jobs"]] == ["tenant:a"] * 3 + ["tenant:b"] * 2
    r = client.patch("/api/v1/queues/mail", json={"group_concurrency": 2, "group_rate_limit": 10})
    assert r.status_code == 200 and (r.json()["group_concurrency"], r.json()["group_rate_limit"]) == (2, 10.0)
    r = client.put("/api/v1/queues/mail/groups/tenant:a", json={"concurrency": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"key": "tenant:a", "running": 0, "ready": 3, "concurrency": 1, "rate_limit": 10.0,
                        "overrides": {"concurrency": True, "rate_limit": False}}
    r = client.get("/api/v1/queues/mail/groups")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and [(g["key"], g["ready"], g["concurrency"]) for g in body["groups"]] == [
        ("tenant:a", 3, 1), ("tenant:b", 2, 2)]
    assert client.get("/api/v1/queues/mail/groups/nobody").json()["ready"] == 0
    r = client.put("/api/v1/queues/mail/groups/tenant:a", json={})  # back to the queue's limits
    assert r.json()["overrides"] == {"concurrency": False, "rate_limit": False} and r.json()["concurrency"] == 2
    r = client.patch("/api/v1/queues/mail", json={"group_concurrency": None})
    assert r.json()["group_concurrency"] is None


@pytest.mark.parametrize("body", [{"group_concurrency": 0}, {"group_concurrency": -1},
                                  {"group_concurrency": "two"}, {"group_rate_limit": "abc"},
                                  {"group_rate_limit": 0}])
def test_bad_group_limits_are_422(client: httpx.Client, body: dict[str, object]) -> None:
    assert_error(client.patch("/api/v1/queues/mail", json=body), 422)
    queues = {q["name"]: q for q in client.get("/api/v1/queues").json()["queues"]}
    assert "mail" not in queues or queues["mail"]["group_concurrency"] is None


@pytest.mark.parametrize("body", [{"concurrency": 0}, {"concurrency": -1}, {"concurrency": 1.5},
                                  {"rate_limit": "abc"}, {"other": 1}])
def test_bad_key_limits_are_422(client: httpx.Client, body: dict[str, object]) -> None:
    assert_error(client.put("/api/v1/queues/mail/groups/k", json=body), 422)
    assert client.get("/api/v1/queues/mail/groups").json()["total"] == 0


def test_a_long_group_key_is_422_and_nothing_stored(client: httpx.Client, server: RunningServer) -> None:
    error = assert_error(client.post("/api/v1/jobs", json={"type": "demo.echo", "group_key": "k" * 1000}), 422)
    assert "group_key" in error["message"]
    r = client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "demo.echo"},
                                                        {"type": "demo.echo", "group_key": "k" * 1000}]})
    assert_error(r, 422)
    assert_error(client.get("/api/v1/queues/mail/groups/" + "k" * 1000), 422)
    assert server.conveyor.list_jobs().jobs == []


def test_metrics_carry_the_busiest_keys_only(client: httpx.Client, server: RunningServer) -> None:
    from conveyor.api.metrics import TOP_KEYS

    server.conveyor.enqueue_batch([{"type": "demo.echo", "queue": "mail", "group_key": f"k{i:02}"}
                                   for i in range(TOP_KEYS + 5)])
    server.conveyor.enqueue_many("demo.echo", [{}, {}], queue="mail", group_key="k99")
    text = client.get("/metrics").text
    assert 'conveyor_group_keys{queue="mail"} 26.0' in text
    assert 'conveyor_group_ready{key="k99",queue="mail"} 2.0' in text  # the busiest first
    assert sum(1 for line in text.splitlines() if line.startswith("conveyor_group_ready{")) == TOP_KEYS
