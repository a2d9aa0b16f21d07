"""No text of a request may hold a NUL character, on either backend: PostgreSQL cannot store one (it failed in the
database: a 503, or a 500 from the ingestion), SQLite stored it. Every route refuses it alike with 422 naming the
field, and stores nothing. (Found by the schema-driven walk on PostgreSQL, `test_schemathesis.py`.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import RunningServer

NUL = "a\u0000b"
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/api/v1/jobs", {"type": "demo.echo", "queue": NUL}, "queue: a string with a NUL character"),
    ("POST", "/api/v1/jobs", {"type": "demo.echo", "unique_key": NUL}, "unique_key: a string with a NUL character"),
    ("POST", "/api/v1/jobs", {"type": "demo.echo", "args": {"x": NUL}}, "args.x: a string with a NUL character"),
    ("POST", "/api/v1/jobs/batch", {"jobs": [{"type": "demo.echo"}, {"type": "demo.echo", "queue": NUL}]},
     "jobs[1].queue: a string with a NUL character"),
    ("POST", "/api/v1/jobs/bulk", {"action": "cancel", "filter": {"type": NUL}},
     "filter.type: a string with a NUL character"),
    ("POST", "/api/v1/workers/claim", {"worker_id": NUL}, "worker_id: a string with a NUL character"),
    ("POST", "/api/v1/workers/claim", {"queues": [NUL]}, "queues[0]: a string with a NUL character"),
    ("POST", "/api/v1/workers/claim", {"types": [NUL]}, "types[0]: a string with a NUL character"),
    ("POST", "/api/v1/sources/text", {"namespace": NUL, "text": "hello"}, "namespace: a string with a NUL"),
    ("POST", "/api/v1/search", {"namespace": "n", "query": NUL}, "query: a string with a NUL character"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), CASES, ids=[f"{c[1]} {c[3][:12]}" for c in CASES])
def test_a_nul_in_a_json_body_is_refused_on_every_route(
    backend_server: RunningServer, method: str, path: str, body: dict[str, Any], message: str
) -> None:
    with backend_server.client() as client:
        answer = client.request(method, path, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_arguments"
        assert message in answer.json()["error"]["message"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []  # nothing stored
        assert client.get("/api/v1/sources").json()["sources"] == []


def test_a_nul_in_a_failure_report_is_refused(backend_server: RunningServer) -> None:
    with backend_server.client() as client:
        client.post("/api/v1/jobs", json={"type": "demo.echo"})
        job = client.post("/api/v1/workers/claim", json={"worker_id": "w", "limit": 1}).json()["jobs"][0]
        lease = {"worker_id": "w", "attempt": 1}
        answer = client.post(f"/api/v1/jobs/{job['id']}/fail", json={**lease, "error": NUL})
        assert answer.status_code == 422, answer.text
        assert "error: a string with a NUL character" in answer.json()["error"]["message"]
        assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "processing"  # the lease still holds
        assert client.post(f"/api/v1/jobs/{job['id']}/complete", json={**lease, "result": 1}).status_code == 200


def test_a_nul_in_a_form_field_or_url_is_refused(backend_server: RunningServer) -> None:
    with backend_server.client() as client:
        upload = client.post("/api/v1/sources/file", data={"namespace": NUL},
                             files={"file": ("a.txt", b"hello", "text/plain")})
        assert upload.status_code == 422, upload.text
        assert "namespace: a string with a NUL character" in upload.json()["error"]["message"]
        refused = {"code": "invalid_request", "message": "the URL holds a NUL character (%00): no parameter takes one"}
        for url in ("/api/v1/jobs?type=a%00b", "/api/v1/sources?namespace=a%00b", "/api/v1/queues/a%00b"):
            answer = client.request("PATCH" if "queues" in url else "GET", url, json={"paused": True})
            assert answer.status_code == 422, (url, answer.text)
            assert answer.json() == {"error": refused}
        assert all("\x00" not in q["name"] for q in client.get("/api/v1/queues").json()["queues"])


@pytest.mark.parametrize("verb", ["complete", "fail"])
def test_an_http_worker_naming_a_job_id_that_is_no_uuid_gets_404(backend_server: RunningServer, verb: str) -> None:
    with backend_server.client() as client:
        body = {"worker_id": "w", "attempt": 1, **({"error": "x"} if verb == "fail" else {"result": 1})}
        answer = client.post(f"/api/v1/jobs/not-a-job/{verb}", json=body)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == {"code": "not_found", "message": "job not-a-job not found"}
