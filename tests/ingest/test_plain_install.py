"""Ingestion on a plain install (`pip install conveyor-jobs`, no extras), in a fresh virtual environment: sources are
indexed with the hashing fallback; a request that needs the `embed` extra is refused up front (422 naming it), with
nothing stored and no job enqueued."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ingest.conftest import free_port, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], check=True, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return venv


def serve(venv: Path, tmp_path: Path, **env: str) -> Iterator[httpx.Client]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    environ |= {"CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
                "CONVEYOR_POLL_INTERVAL_S": "0.1", **env}
    server = subprocess.Popen([str(venv / "bin" / "conveyor"), "serve", "--port", str(port)], env=environ,
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            yield api
    finally:
        stop(server)


def test_the_base_install_has_what_ingestion_needs(plain_venv: Path) -> None:
    python = str(plain_venv / "bin" / "python")
    probe = ("import numpy, pypdf, docx, selectolax, protego, httpx, multipart; import importlib.util as u; "
             "print(u.find_spec('onnxruntime'))")
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "None"


def test_text_is_indexed_with_the_hashing_fallback(plain_venv: Path, tmp_path: Path) -> None:
    for api in serve(plain_venv, tmp_path):
        created = api.post("/api/v1/sources/text", json={"namespace": "kb", "text": "Conveyor stores jobs in SQLite."})
        assert created.status_code == 201, created.text
        source = created.json()["source"]["id"]
        deadline = time.monotonic() + 60
        while (status := api.get(f"/api/v1/sources/{source}").json()["status"]) != "ready":
            assert status in ("pending", "processing") and time.monotonic() < deadline, status
            time.sleep(0.1)
        hits = api.post("/api/v1/search", json={"namespace": "kb", "query": "where are jobs stored"}).json()
        assert hits["results"][0]["source_id"] == source


def test_a_request_for_the_missing_extra_is_refused_up_front(plain_venv: Path, tmp_path: Path) -> None:
    for api in serve(plain_venv, tmp_path, CONVEYOR_EMBEDDER="minilm"):
        refused = api.post("/api/v1/sources/text", json={"namespace": "kb", "text": "Moles dig tunnels."})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "extra_not_installed"
        assert "pip install 'conveyor-jobs[embed]'" in refused.json()["error"]["message"]
        upload = api.post("/api/v1/sources/file", data={"namespace": "kb"},
                          files={"file": ("notes.md", b"# Moles\n\nThey dig.", "text/markdown")})
        assert upload.status_code == 422 and upload.json()["error"]["code"] == "extra_not_installed"
        assert api.get("/api/v1/sources").json() == {"sources": []}
        assert api.get("/api/v1/jobs").json()["jobs"] == []
    assert not (tmp_path / "data" / "uploads").exists() or not list((tmp_path / "data" / "uploads").iterdir())
