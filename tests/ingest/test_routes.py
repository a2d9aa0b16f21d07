"""The ingestion endpoints over real HTTP: a FastAPI app with the router, served by uvicorn on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from conveyor import Conveyor
from conveyor.ingest.routes import create_router
from conveyor.testing import drain
from tests.ingest.conftest import Site, free_port, make_pdf


def serve_app(app: object) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return server, thread, port


@pytest.fixture
def api(ingest_app: Conveyor) -> Iterator[httpx.Client]:
    app = FastAPI()
    app.include_router(create_router(ingest_app), prefix="/api/v1")
    server, thread, port = serve_app(app)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(10)


def test_mounted_in_the_full_rest_api(sqlite_ingest_app: Conveyor) -> None:
    """`conveyor.api.create_app` includes the router by itself (when the REST API is installed)."""
    api_module = pytest.importorskip("conveyor.api")
    server, thread, port = serve_app(api_module.create_app(sqlite_ingest_app))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            paths = client.get("/openapi.json").json()["paths"]
            assert {"/api/v1/sources/text", "/api/v1/sources/file", "/api/v1/sources/website", "/api/v1/sources",
                    "/api/v1/sources/{source_id}", "/api/v1/sources/{source_id}/jobs", "/api/v1/search"} <= set(paths)
            created = client.post("/api/v1/sources/text", json={"namespace": "kb", "text": "Moles dig tunnels."})
            assert created.status_code == 201
            drain(sqlite_ingest_app)
            hit = client.post("/api/v1/search", json={"namespace": "kb", "query": "moles tunnels"}).json()
            assert hit["results"][0]["source_id"] == created.json()["source"]["id"]
            big = client.post("/api/v1/sources/file", data={"namespace": "kb"},
                              files={"file": ("big.txt", b"x" * (4 * 1024 * 1024), "text/plain")})
            assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
            assert client.get("/api/v1/sources/unknown").json()["error"]["code"] == "not_found"
    finally:
        server.should_exit = True
        thread.join(10)


def test_text_source_lifecycle(api: httpx.Client, ingest_app: Conveyor) -> None:
    created = api.post("/sources/text", json={"namespace": "kb", "name": "owls", "text": "Owls can rotate their "
                                                                                         "heads 270 degrees."})
    assert created.status_code == 201, created.text
    body = created.json()
    source = body["source"]
    assert source["status"] == "pending" and source["kind"] == "text" and source["namespace"] == "kb"
    assert set(source) >= {"id", "namespace", "name", "kind", "status", "chunk_count", "error", "created_at",
                           "updated_at"}
    drain(ingest_app)
    got = api.get(f"/sources/{source['id']}").json()
    assert got["status"] == "ready" and got["chunk_count"] == 1
    jobs = api.get(f"/sources/{source['id']}/jobs").json()["jobs"]
    assert [j["id"] for j in jobs] == [body["job_id"]] and jobs[0]["status"] == "completed"
    assert jobs[0]["type"] == "process_text" and jobs[0]["priority"] == 10
    listed = api.get("/sources", params={"namespace": "kb"}).json()["sources"]
    assert [s["id"] for s in listed] == [source["id"]]
    assert api.get("/sources", params={"namespace": "nope"}).json() == {"sources": []}
    results = api.post("/search", json={"namespace": "kb", "query": "owls rotate heads", "top_k": 3}).json()["results"]
    assert results[0]["source_id"] == source["id"] and 0 < results[0]["score"] <= 1.0
    assert results[0]["text"] == "Owls can rotate their heads 270 degrees."
    deleted = api.delete(f"/sources/{source['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.post("/search", json={"namespace": "kb", "query": "owls"}).json() == {"results": []}
    missing = api.get(f"/sources/{source['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert api.delete(f"/sources/{source['id']}").status_code == 404
    assert api.get(f"/sources/{source['id']}/jobs").status_code == 404


def test_file_upload(api: httpx.Client, ingest_app: Conveyor, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "My Report (final).pdf", ["Hedgehogs eat beetles and worms at night."])
    created = api.post("/sources/file", data={"namespace": "kb"},
                       files={"file": ("../../etc/My Report (final).pdf", pdf.read_bytes(), "application/pdf")})
    assert created.status_code == 201, created.text
    source = created.json()["source"]
    assert source["name"] == "My Report (final).pdf" and source["kind"] == "file"
    stored = list((Path(ingest_app.settings.data_dir) / "uploads").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".pdf" and "Report" not in stored[0].name
    drain(ingest_app)
    results = api.post("/search", json={"namespace": "kb", "query": "hedgehogs eat beetles"}).json()["results"]
    assert results[0]["source_id"] == source["id"]
    jobs = api.get(f"/sources/{source['id']}/jobs").json()["jobs"]
    assert jobs[0]["type"] == "process_file" and jobs[0]["priority"] == 5


def test_upload_limits_and_errors(api: httpx.Client) -> None:
    too_big = api.post("/sources/file", data={"namespace": "kb"},
                       files={"file": ("big.txt", b"x" * (3 * 1024 * 1024), "text/plain")})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    just_over = api.post("/sources/file", data={"namespace": "kb"},
                         files={"file": ("big.txt", b"x" * (2 * 1024 * 1024 + 1), "text/plain")})
    assert just_over.status_code == 413
    empty = api.post("/sources/file", data={"namespace": "kb"}, files={"file": ("empty.txt", b"", "text/plain")})
    assert empty.status_code == 422 and "empty" in empty.json()["error"]["message"]
    exe = api.post("/sources/file", data={"namespace": "kb"}, files={"file": ("a.exe", b"MZ", "text/plain")})
    assert exe.status_code == 422 and "unsupported file type" in exe.json()["error"]["message"]
    no_ns = api.post("/sources/file", files={"file": ("a.txt", b"hi", "text/plain")})
    assert no_ns.status_code == 422 and "namespace" in no_ns.json()["error"]["message"]
    no_file = api.post("/sources/file", data={"namespace": "kb"}, files={"other": ("a.txt", b"hi", "text/plain")})
    assert no_file.status_code == 422
    assert api.get("/sources").json() == {"sources": []}


def test_website_source_and_validation(api: httpx.Client, ingest_app: Conveyor, site: Site) -> None:
    created = api.post("/sources/website", json={"namespace": "web", "url": site.base + "/", "max_pages": 2,
                                                 "include_subpages": True})
    assert created.status_code == 201, created.text
    source = created.json()["source"]
    assert source["kind"] == "website" and source["url"] == site.base + "/" and source["max_pages"] == 2
    drain(ingest_app)
    done = api.get(f"/sources/{source['id']}").json()
    assert done["status"] == "ready" and len(site.pages_fetched()) == 2
    for url in ("file:///etc/passwd", "javascript:alert(1)"):
        refused = api.post("/sources/website", json={"namespace": "web", "url": url})
        assert refused.status_code == 422 and "only http and https" in refused.json()["error"]["message"]
    bad = api.post("/sources/website", json={"namespace": "web", "url": site.base, "max_pages": "many"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_bad_bodies(api: httpx.Client) -> None:
    assert api.post("/sources/text", content=b"{not json", headers={"content-type": "application/json"}
                    ).status_code == 400
    assert api.post("/sources/text", json=[1, 2]).status_code == 400
    missing = api.post("/sources/text", json={"namespace": "kb"})
    assert missing.status_code == 422 and "text" in missing.json()["error"]["message"]
    extra = api.post("/sources/text", json={"namespace": "kb", "text": "x", "colour": "red"})
    assert extra.status_code == 422
    blank = api.post("/sources/text", json={"namespace": "kb", "text": "   "})
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "invalid_arguments"
    top_k = api.post("/search", json={"namespace": "kb", "query": "x", "top_k": 0})
    assert top_k.status_code == 422


def test_search_modes_filters_and_bad_input(api: httpx.Client, ingest_app: Conveyor) -> None:
    texts = {"kettle": "Copper kettles whistle when the water boils.",
             "otter": "Sea otters hold hands while they sleep."}
    ids = {k: api.post("/sources/text", json={"namespace": "kb", "text": t}).json()["source"]["id"]
           for k, t in texts.items()}
    drain(ingest_app)
    for mode, matched in (("hybrid", ["vector", "keyword"]), ("vector", ["vector"]), ("keyword", ["keyword"])):
        hits = api.post("/search", json={"namespace": "kb", "query": "otters sleeping", "mode": mode}).json()
        assert hits["results"][0]["source_id"] == ids["otter"] and hits["results"][0]["matched"] == matched, mode
    hybrid = api.post("/search", json={"namespace": "kb", "query": "otters sleeping"}).json()["results"]
    assert hybrid[0]["matched"] == ["vector", "keyword"]  # hybrid is the default
    only = api.post("/search", json={"namespace": "kb", "query": "otters sleeping",
                                     "filters": {"source_ids": [ids["kettle"]], "kinds": ["text"]}}).json()
    assert {h["source_id"] for h in only["results"]} == {ids["kettle"]}
    assert api.post("/search", json={"namespace": "nobody", "query": "otters"}).json() == {"results": []}
    assert len(api.post("/search", json={"namespace": "kb", "query": "otters", "top_k": 100}).json()["results"]) == 2
    bad = [
        {"namespace": "kb", "query": ""},
        {"namespace": "kb", "query": "   "},
        {"namespace": "kb", "query": "x" * 100_000},
        {"namespace": "kb", "query": "otters", "top_k": 0},
        {"namespace": "kb", "query": "otters", "top_k": 10_000},
        {"namespace": "kb", "query": "otters", "mode": "semantic"},
        {"namespace": "kb", "query": "otters", "filters": {"kinds": ["pdf"]}},
        {"namespace": "kb", "query": "otters", "filters": {"metadata": {"a": {"nested": 1}}}},
        {"namespace": "", "query": "otters"},
    ]
    for body in bad:
        answer = api.post("/search", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert set(answer.json()["error"]) == {"code", "message"}


def test_a_missing_extra_is_refused_up_front_and_nothing_is_stored(
    api: httpx.Client, ingest_app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONVEYOR_EMBEDDER=minilm where the `embed` extra is not installed: 422 naming the extra, no source, no job."""
    import sys

    from conveyor.ingest import Ingestion

    monkeypatch.setenv("CONVEYOR_EMBEDDER", "minilm")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    answer = api.post("/sources/text", json={"namespace": "kb", "text": "Moles dig tunnels."})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "extra_not_installed"
    assert "pip install 'conveyor-jobs[embed]'" in answer.json()["error"]["message"]
    upload = api.post("/sources/file", data={"namespace": "kb"}, files={"file": ("a.txt", b"Moles.", "text/plain")})
    assert upload.status_code == 422 and upload.json()["error"]["code"] == "extra_not_installed"
    assert Ingestion(ingest_app).list_sources() == []
    assert ingest_app.list_jobs(limit=10).jobs == []
    data_dir = Path(ingest_app.settings.data_dir) / "uploads"
    assert not data_dir.exists() or list(data_dir.iterdir()) == []  # the uploaded file went with the refusal
