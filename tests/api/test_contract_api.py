"""Issue 17 at the HTTP edge and the command line: errors that say what is wrong, one code per cause, values refused
rather than altered, the body limit as a setting, one-line start-up errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conveyor import JobStatus
from conveyor.client import Client
from conveyor.errors import InvalidArgumentsError, UnknownTaskError
from conveyor.settings import Settings
from tests.api.conftest import RunningServer

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def test_a_json_body_without_a_json_content_type_says_so(client: httpx.Client) -> None:
    r = client.post("/api/v1/jobs", content=b'{"type": "demo.echo"}',
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "bad_request", "message": "Content-Type must be application/json, "
                                 "got application/x-www-form-urlencoded"}
    ok = client.post("/api/v1/jobs", content=b'{"type": "demo.echo"}',
                     headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 201
    assert client.post("/api/v1/jobs", content=b"[1]", headers={"content-type": "application/json"}).json() == {
        "error": {"code": "bad_request", "message": "the request body must be a JSON object"}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"type": "demo.echo", "args": {"x": NaN}}', "args.x: nan is not valid JSON"),
        (b'{"type": "demo.echo", "args": {"x": [Infinity]}}', "args.x[0]: inf is not valid JSON"),
        (b'{"type": "demo.echo", "args": {"x": "a\\u0000b"}}', "args.x: a string with a NUL character"),
        (b'{"type": "demo.echo", "metadata": {"m": NaN}}', "metadata.m: nan is not valid JSON"),
        (b'{"type": "demo.echo", "tags": ["a\\u0000"]}', "tags[0]: a string with a NUL character"),
    ],
)
def test_values_json_cannot_hold_are_refused_naming_the_field(client: httpx.Client, raw: bytes,
                                                              message: str) -> None:
    r = client.post("/api/v1/jobs", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]["message"]
    assert client.get("/api/v1/jobs").json()["jobs"] == []  # nothing stored


def test_an_unknown_type_is_unknown_task_on_every_route_and_in_the_client(server: RunningServer) -> None:
    with server.client() as c:
        one = c.post("/api/v1/jobs", json={"type": "nope"})
        batch = c.post("/api/v1/jobs/batch", json={"jobs": [{"type": "demo.echo"}, {"type": "nope"}]})
    assert (one.status_code, one.json()["error"]["code"]) == (422, "unknown_task")
    assert (batch.status_code, batch.json()["error"]["code"]) == (422, "unknown_task")
    assert batch.json()["error"]["message"].startswith("jobs[1]: unknown task type 'nope'")
    with Client(server.url) as api:
        with pytest.raises(UnknownTaskError) as raised:
            api.enqueue("nope", {})
        assert raised.value.task_type == "nope"
        with pytest.raises(InvalidArgumentsError):
            api.enqueue("demo.sleep", {"seconds": "long"})


def test_unique_key_answers_200_with_the_existing_job(client: httpx.Client) -> None:
    first = client.post("/api/v1/jobs", json={"type": "demo.echo", "unique_key": "k"})
    again = client.post("/api/v1/jobs", json={"type": "demo.echo", "unique_key": "k", "args": {"x": 1}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_the_body_limit_is_a_setting(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(Settings(max_body_mb=1))
    big = {"type": "demo.echo", "args": {"blob": "x" * (1024 * 1024)}}
    with server.client() as c:
        r = c.post("/api/v1/jobs", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert c.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"blob": "x" * 1000}}).status_code == 201
    assert Settings.from_env({"CONVEYOR_MAX_BODY_MB": "32"}).max_body_mb == 32


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([CONVEYOR, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_an_unreachable_postgresql_is_one_line_soon_and_shows_no_password(tmp_path: Path) -> None:
    """One line, no password, and no waiting: at most the 3 s of the issue beyond what the same command takes against
    a database that answers (the process's start-up, which a loaded machine stretches)."""
    started = time.monotonic()
    assert _run("jobs", "list", "--db", f"sqlite:///{tmp_path}/ok.db").returncode == 0
    baseline = time.monotonic() - started
    started = time.monotonic()
    result = _run("jobs", "list", "--db", "postgresql://u:hunter2@127.0.0.1:1/db")
    took = time.monotonic() - started - baseline
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip() == "error: cannot connect to PostgreSQL at 127.0.0.1:1/db: connection refused"
    assert "hunter2" not in result.stderr
    assert took < 3.0, f"took {took:.1f}s more than a command that succeeds"


def test_serve_on_a_busy_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run("serve", "--db", f"sqlite:///{tmp_path}/c.db", "--port", str(port))
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"error: cannot listen on 127.0.0.1:{port}: the port is in use (choose another with --port)"]


def test_enqueue_over_the_api_then_the_job_has_its_tasks_defaults(backend_server: RunningServer) -> None:
    """REST enqueue computes options like the Python API (the demo task's default retries: the settings')."""
    with backend_server.client() as c:
        job = c.post("/api/v1/jobs", json={"type": "demo.sleep", "args": {"seconds": 0}}).json()
    stored = backend_server.conveyor.require_job(job["id"])
    assert stored.max_retries == backend_server.conveyor.settings.max_retries == job["max_retries"]
    assert stored.status in (JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED)
