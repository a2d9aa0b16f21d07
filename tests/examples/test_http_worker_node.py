"""examples/http_worker_node: `conveyor serve` with the example's app, and the Node worker claiming over HTTP."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, wait_for
from tests.examples.conftest import Processes

NODE = shutil.which("node")
if NODE is None:
    if IN_CI:
        raise RuntimeError("node is missing and CI must run the Node worker example (.ci/run installs it)")
    pytest.skip("node is not installed", allow_module_level=True)


def test_node_worker_runs_fails_and_cancels_jobs(processes: Processes) -> None:
    assert NODE is not None
    base = processes.server("http_worker_node", sys.executable, "-m", "conveyor", "serve", "--app", "app:app",
                            "--queues", "default", "--port", "{port}")
    node = processes.start("http_worker_node", NODE, "worker.mjs",
                           env={"CONVEYOR_API_URL": base, "WORD_DELAY_MS": "300"})
    with httpx.Client(base_url=base + "/api/v1", timeout=30) as api:

        def job(job_id: str) -> dict[str, Any]:
            return dict(api.get(f"/jobs/{job_id}").json())

        def enqueue(text: str) -> str:
            created = api.post("/jobs", json={"type": "word_count", "args": {"text": text}})
            assert created.status_code == 201, created.text
            return str(created.json()["id"])

        counted = enqueue("The cat and the hat and the bat")
        wait_for(lambda: job(counted)["status"] == "completed", 30, what=f"the count: {processes.output(node)}")
        assert job(counted)["result"] == {"words": 8, "distinct": 5, "top": [["the", 3], ["and", 2], ["bat", 1]]}
        node_workers = [w for w in api.get("/workers").json()["workers"] if w["queues"] == ["node"]]
        assert [w["id"] for w in node_workers] == [job(counted)["worker_id"]]

        empty = enqueue("...")
        wait_for(lambda: job(empty)["status"] == "failed", 30, what="the empty text to fail")
        assert job(empty)["error"] == "the text has no words" and job(empty)["attempts"] == 1  # no retry

        long = enqueue("word " * 200)
        wait_for(lambda: job(long)["progress"] > 0, 30, what="progress from the Node worker")
        assert job(long)["status"] == "processing" and job(long)["progress_info"]["words"] > 0
        assert api.post(f"/jobs/{long}/cancel").status_code == 200
        wait_for(lambda: job(long)["status"] == "cancelled", 30, what="the cancel")

        # with a bad payload the API refuses the job: the Node worker never sees it
        assert api.post("/jobs", json={"type": "word_count", "args": {"text": 42}}).status_code == 422
    # the worker logs each outcome once the server has answered, so the last line may come a moment after the status
    wait_for(lambda: f"cancelled {long}" in processes.output(node), 10, what="the worker's log of the cancel")
    assert f"completed {counted}" in processes.output(node) and f"failed {empty}" in processes.output(node)
