"""The API token, and `conveyor serve` as a real process: bind checks, the integrated worker, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor, JobStatus
from conveyor.api.middleware import SESSION_COOKIE, session_value
from conveyor.api.server import check_bind, is_loopback
from conveyor.errors import ConfigError
from conveyor.settings import Settings
from tests.api.conftest import RunningServer, free_port
from tests.conftest import wait_for

TOKEN = "s3cret-token"


@pytest.fixture
def secured(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1, api_token=TOKEN))


def test_token_required_on_api_and_metrics(secured: RunningServer) -> None:
    with secured.client() as anonymous:
        for method, path in [("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs"), ("GET", "/api/v1/events"),
                             ("GET", "/api/v1/stats"), ("GET", "/metrics"), ("GET", "/api/v1/no-such-route"),
                             ("POST", "/api/v1/workers/claim")]:
            r = anonymous.request(method, path, json={"type": "demo.echo"} if method == "POST" else None)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path
    with secured.client("wrong-token") as wrong:
        assert wrong.get("/api/v1/jobs").status_code == 401
    with httpx.Client(base_url=secured.url, headers={"Authorization": TOKEN}) as no_scheme:
        assert no_scheme.get("/api/v1/jobs").status_code == 401
    with secured.client(TOKEN) as good:
        r = good.post("/api/v1/jobs", json={"type": "demo.echo"})
        assert r.status_code == 201
        assert good.get("/api/v1/jobs").json()["jobs"][0]["id"] == r.json()["id"]
        assert good.get("/metrics").status_code == 200
    # The dashboard's session cookie (derived from the token, never the token itself) works too.
    assert session_value(TOKEN) != TOKEN
    with httpx.Client(base_url=secured.url, cookies={SESSION_COOKIE: session_value(TOKEN)}) as browser:
        assert browser.get("/api/v1/jobs").status_code == 200
    with httpx.Client(base_url=secured.url, cookies={SESSION_COOKIE: TOKEN}) as forged:
        assert forged.get("/api/v1/jobs").status_code == 401


def test_no_token_means_open_api(client: httpx.Client) -> None:
    assert client.get("/api/v1/jobs").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_bind_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    check_bind("127.0.0.1", None, False)
    check_bind("0.0.0.0", "token", False)
    check_bind("0.0.0.0", None, True)
    with pytest.raises(ConfigError, match="CONVEYOR_API_TOKEN"):
        check_bind("0.0.0.0", None, False)


# -------------------------------------------------------------------------------------------------- serve
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {**env, "CONVEYOR_LEASE_S": "3", "CONVEYOR_SHUTDOWN_GRACE_S": "5", **extra}


@pytest.fixture
def serve_process(sqlite_url: str, tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "--db", sqlite_url, "--port", str(port), *args],
            env=env or _env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_refuses_public_host_without_token(
    serve_process: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    proc, _ = serve_process("--host", "0.0.0.0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "CONVEYOR_API_TOKEN" in out and "--insecure" in out


def test_serve_runs_api_and_integrated_worker_and_stops_on_sigterm(
    serve_process: Callable[..., tuple[subprocess.Popen[str], str]], sqlite_url: str
) -> None:
    proc, url = serve_process("--concurrency", "2")
    wait_for(lambda: _up(url) or proc.poll() is not None, timeout=60, what="conveyor serve to answer")
    assert proc.poll() is None
    with httpx.Client(base_url=url, timeout=30) as client:
        job = client.post("/api/v1/jobs", json={"type": "demo.echo", "args": {"via": "serve"}}).json()

        def done() -> bool:
            return bool(client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "completed")

        wait_for(done, timeout=60, what="the integrated worker to complete the job")
        workers = client.get("/api/v1/workers").json()["workers"]
        assert len(workers) == 1 and workers[0]["slots"] == 2
        long = client.post("/api/v1/jobs", json={"type": "demo.sleep", "args": {"seconds": 60, "steps": 60}}).json()
        wait_for(lambda: client.get(f"/api/v1/jobs/{long['id']}").json()["status"] == "processing", timeout=60)
    # An open event stream must not hold the shutdown up.
    with httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=None)) as sse_client, \
            sse_client.stream("GET", "/api/v1/events") as stream:
        assert stream.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    # The running job was handed back after the grace period (pending again), not lost; the worker deregistered.
    with Conveyor(sqlite_url) as app:
        job_after = app.get_job(long["id"])
        assert job_after is not None and job_after.status is JobStatus.PENDING
        assert app.list_workers() == []


def test_serve_no_worker_and_public_host_with_token(
    serve_process: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    proc, url = serve_process("--no-worker", "--host", "0.0.0.0", env=_env(CONVEYOR_API_TOKEN=TOKEN))
    wait_for(lambda: _up(url) or proc.poll() is not None, timeout=60, what="conveyor serve to answer")
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert httpx.get(f"{url}/api/v1/jobs").status_code == 401
        client.post("/api/v1/jobs", json={"type": "demo.echo"})
        assert client.get("/api/v1/workers").json()["workers"] == []
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
