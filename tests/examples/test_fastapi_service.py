"""examples/fastapi_service: the service (uvicorn) and a worker as two processes, driven over HTTP."""

from __future__ import annotations

import sys

import httpx

from tests.conftest import wait_for
from tests.examples.conftest import Processes


def test_enqueue_in_a_handler_and_follow_progress(processes: Processes) -> None:
    base = processes.server("fastapi_service", sys.executable, "-m", "uvicorn", "app:api", "--port", "{port}")
    processes.worker("fastapi_service", "app:jobs")
    with httpx.Client(base_url=base, timeout=30) as client:
        types = {t["name"]: t for t in client.get("/task-types").json()}
        assert set(types) == {"thumbnails", "welcome_email"}
        assert set(types["thumbnails"]["args_schema"]["properties"]) == {"image_url", "sizes"}

        body = {"image_url": "https://example.org/a.png", "sizes": [8, 16, 32]}
        started = client.post("/tasks/thumbnails", json=body)
        assert started.status_code == 202 and started.json()["status"] in ("pending", "processing")
        job_id = started.json()["id"]

        seen: list[int] = []

        def finished() -> bool:
            task = client.get(f"/tasks/{job_id}").json()
            seen.append(task["progress"])
            return task["status"] == "completed"

        wait_for(finished, timeout=30, interval=0.05, what="the thumbnails job")
        task = client.get(f"/tasks/{job_id}").json()
        assert task["result"] == {"thumbnails": [f"https://example.org/a.png?width={s}" for s in (8, 16, 32)]}
        # (progress_info may hold the report before the last: the worker drops a report still unwritten at completion)
        assert task["progress"] == 100 and task["progress_info"]["stage"] == "resizing"
        assert any(0 < p < 100 for p in seen), f"no progress seen between 0 and 100: {seen}"

        email = client.post("/tasks/welcome_email", json={"address": "ada@example.org", "name": "Ada"}).json()
        wait_for(lambda: client.get(f"/tasks/{email['id']}").json()["status"] == "completed", 30, what="the email")
        assert client.get(f"/tasks/{email['id']}").json()["result"]["subject"] == "Welcome, Ada!"

        # refused up front, nothing enqueued: an unknown type, bad arguments
        assert client.post("/tasks/nope", json={}).status_code == 404
        assert client.post("/tasks/thumbnails", json={"image_url": "x", "sizes": "big"}).status_code == 422
        assert client.get("/tasks/no-such-id").status_code == 404
        # Conveyor's own API, mounted in the service
        listed = client.get("/conveyor/api/v1/jobs").json()["jobs"]
        assert {j["id"] for j in listed} == {job_id, email["id"]}


def test_cancel_a_running_task(processes: Processes) -> None:
    base = processes.server("fastapi_service", sys.executable, "-m", "uvicorn", "app:api", "--port", "{port}")
    processes.worker("fastapi_service", "app:jobs")
    with httpx.Client(base_url=base, timeout=30) as client:
        job_id = client.post("/tasks/thumbnails", json={"image_url": "u", "sizes": list(range(1, 100))}).json()["id"]
        wait_for(lambda: client.get(f"/tasks/{job_id}").json()["progress"] > 0, 30, what="the job under way")
        assert client.post(f"/tasks/{job_id}/cancel").status_code == 200
        wait_for(lambda: client.get(f"/tasks/{job_id}").json()["status"] == "cancelled", 30, what="the cancel")
        assert client.get(f"/tasks/{job_id}").json()["progress"] < 100
        assert client.post(f"/tasks/{job_id}/cancel").status_code == 409  # finished: nothing to cancel
