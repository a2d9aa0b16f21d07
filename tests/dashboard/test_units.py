"""The dashboard's pure parts (forms from schemas, redirects, sessions) and its event stream over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conveyor import Conveyor
from conveyor.dashboard._forms import EXTRA_FIELD, accepts_extra, form_fields, parse_args
from conveyor.dashboard._security import Guard, safe_next
from conveyor.errors import InvalidArgumentsError
from tests.dashboard.conftest import Server


def test_public_names() -> None:
    import conveyor.dashboard

    assert conveyor.dashboard.__all__ == ["Dashboard", "create_dashboard"]  # Dashboard: for plugins' pages


def test_form_fields_follow_the_task_schema(server: Server) -> None:
    schema = server.conveyor.tasks["demo.sleep"].args_schema()
    fields = {f.name: f for f in form_fields(schema)}
    assert fields["seconds"].kind == "number" and fields["seconds"].default == "1.0"
    assert fields["steps"].kind == "integer" and not fields["steps"].required
    assert not accepts_extra(schema)
    assert parse_args(list(fields.values()), {"seconds": "2.5", "steps": ""}, False) == {"seconds": 2.5}
    with pytest.raises(InvalidArgumentsError, match="not a valid integer"):
        parse_args(list(fields.values()), {"steps": "1.5"}, False)


def test_form_fields_of_optional_enum_bool_and_json_types() -> None:
    schema = {
        "properties": {
            "name": {"type": "string"},
            "mode": {"enum": ["fast", "slow"], "type": "string"},
            "dry": {"type": "boolean", "default": False},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "items": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "items"],
        "additionalProperties": False,
    }
    fields = form_fields(schema)
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("name", "text", True),
        ("mode", "select", False),
        ("dry", "boolean", False),
        ("limit", "integer", False),
        ("items", "json", True),
    ]
    form = {"name": "<b>x</b>", "mode": "fast", "dry": "on", "limit": "", "items": '["a", "b"]'}
    assert parse_args(fields, form, False) == {"name": "<b>x</b>", "mode": "fast", "dry": True, "items": ["a", "b"]}


def test_extra_arguments_come_from_a_json_object() -> None:
    schema = {"properties": {}, "additionalProperties": True}
    assert accepts_extra(schema)
    assert parse_args([], {EXTRA_FIELD: '{"a": 1}'}, True) == {"a": 1}
    with pytest.raises(InvalidArgumentsError, match="must be an object"):
        parse_args([], {EXTRA_FIELD: "[1]"}, True)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ui/jobs?status=failed", "/ui/jobs?status=failed"),
        ("https://evil.test/", "/"),
        ("//evil.test/", "/"),
        ("/\\evil.test", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_redirects_stay_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_sessions_hold_a_derived_value_that_the_token_change_ends() -> None:
    guard = Guard("token-one")
    session = guard.new_session()
    assert "token-one" not in session and guard.session_valid(session)
    assert not Guard("token-two").session_valid(session)
    assert not guard.session_valid("forged") and not guard.session_valid(None)
    assert guard.check_token("token-one") and not guard.check_token("token-on")
    assert not Guard(None).enabled


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(event, id, data) of each SSE message, skipping comments."""
    name = event_id = ""
    data: list[str] = []
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield name, event_id, json.loads("\n".join(data))
            name, event_id, data = "", "", []


def test_event_stream_sends_changes_deletions_and_what_a_reconnect_missed(server: Server) -> None:
    conveyor = server.conveyor
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("GET", "/ui/events", params={"type": "demo.echo"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == ": connected"
            conveyor.enqueue("demo.sleep", {"seconds": 0.1})  # filtered out by type
            job = conveyor.enqueue("demo.echo", {"x": 1})
            name, first_id, data = next(_events(lines))
            assert (name, data["id"], data["status"]) == ("job", job.id, "pending")

        with client.stream("GET", "/ui/events") as response:
            events = _events(response.iter_lines())
            conveyor.cancel(job.id)
            name, second_id, data = next(events)
            assert (name, data["status"]) == ("job", "cancelled") and int(second_id) > int(first_id)
            conveyor.delete(job.id)
            name, _, data = next(events)
            assert (name, data) == ("deleted", {"id": job.id})

        # Reconnecting with Last-Event-ID replays what happened after it.
        later = conveyor.enqueue("demo.echo", {"x": 2})
        with client.stream("GET", "/ui/events", headers={"Last-Event-ID": first_id}) as response:
            seen = []
            for name, _, data in _events(response.iter_lines()):
                seen.append((name, data["id"]))
                if data["id"] == later.id:
                    break
        assert ("deleted", job.id) in seen and seen[-1] == ("job", later.id)


def test_queue_actions_take_any_queue_name(server: Server) -> None:
    server.conveyor.enqueue("demo.echo", {}, queue="team/a b")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/").text
        assert 'action="/ui/queues/team%2Fa%20b/pause"' in page
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        headers = {"Origin": server.url, "Accept": "application/json"}
        answer = client.post("/ui/queues/team%2Fa%20b/pause", data={"csrf": csrf}, headers=headers)
        assert answer.status_code == 200 and answer.json()["queue"]["paused"] is True
        answer = client.post(
            "/ui/queues/team%2Fa%20b/concurrency", data={"csrf": csrf, "concurrency": "x"}, headers=headers
        )
        assert answer.status_code == 422 and not answer.json()["ok"]
    assert next(q for q in server.conveyor.list_queues() if q.name == "team/a b").paused


def test_stats_give_the_duration_chart_a_series_per_minute(app: Conveyor) -> None:
    """The overview's duration chart reads `duration_series` from the stored history, on every backend."""
    app.enqueue_many("demo.echo", [{"i": i} for i in range(3)])
    # In a thread: a session's browser tests leave Playwright's event loop on this one.
    worker = threading.Thread(target=app.run_worker, kwargs={"concurrency": 2, "burst": True})
    worker.start()
    worker.join(timeout=60)
    series = app.stats().extra["duration_series"]
    assert len(series) == 60
    assert sum(point["count"] for point in series) == 3
    busy = [point for point in series if point["count"]]
    assert busy and all(0 <= point["p50"] <= point["p95"] for point in busy)
    assert all(point["p50"] is None for point in series if not point["count"])


def test_the_overview_names_types_that_no_live_worker_runs(server: Server) -> None:
    """Jobs of a type no live worker registers wait, pending; the overview says so (and the live feed carries it)."""
    import time

    from conveyor.backends.base import WorkerBeat

    app = server.conveyor

    @app.task
    def order(n: int) -> int:
        return n

    app.enqueue_many("order", [{"n": n} for n in range(3)])
    now = time.time()
    app.backend.heartbeat(WorkerBeat("w", "h", 1, None, 4, now, now, now + 60, types=("demo.echo",)))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/").text
        assert "No worker for <code>order</code>: 3 pending" in page
        feed = client.get("/ui/data/overview").json()
    assert feed["unserved"] == [{"type": "order", "pending": 3, "scheduled": 0}]


def test_the_overview_shows_the_busiest_keys_of_a_keyed_queue(server: Server) -> None:
    """Fair limits per key: the overview lists each keyed queue's busiest keys with running, ready and the limit,
    server-rendered and in the live feed; a queue without keys shows no such table."""
    app = server.conveyor
    app.enqueue_many("demo.echo", [{"i": i} for i in range(3)], queue="mail", group_key="tenant:big")
    app.enqueue("demo.echo", {}, queue="mail", group_key="tenant:small")
    app.enqueue("demo.echo", {}, queue="plain")
    app.set_queue("mail", group_concurrency=2)
    app.set_group("mail", "tenant:small", concurrency=1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/").text
        feed = client.get("/ui/data/overview").json()
    assert "Busiest keys" in page and 'data-group-queue="mail"' in page and 'data-group-queue="plain"' not in page
    assert "<th scope=\"row\">tenant:big</th><td class=\"num\">0</td><td class=\"num\">3</td><td class=\"num\">2</td>" \
        in page
    assert feed["groups"] == [{"queue": "mail", "total": 2, "keys": [
        {"key": "tenant:big", "running": 0, "ready": 3, "concurrency": 2, "rate_limit": None,
         "overrides": {"concurrency": False, "rate_limit": False}},
        {"key": "tenant:small", "running": 0, "ready": 1, "concurrency": 1, "rate_limit": None,
         "overrides": {"concurrency": True, "rate_limit": False}}]}]
