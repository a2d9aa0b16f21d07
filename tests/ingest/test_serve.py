"""The product path: `conveyor serve` (API and its integrated worker) ingests and searches over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ingest.conftest import Site, free_port, make_pdf, stop, wait_healthy

pytest.importorskip("conveyor.api")


def test_serve_ingests_files_text_and_websites(tmp_path: Path, sqlite_url: str, site: Site) -> None:
    port = free_port()
    env = {**os.environ, "CONVEYOR_DATABASE_URL": sqlite_url, "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
           "CONVEYOR_CRAWL_ALLOW_PRIVATE": "true", "CONVEYOR_POLL_INTERVAL_S": "0.1"}
    server = subprocess.Popen([sys.executable, "-m", "conveyor", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as api:
            pdf = make_pdf(tmp_path / "field-notes.pdf", ["Puffins nest in burrows on grassy cliff tops."])
            ids = [
                api.post("/sources/file", data={"namespace": "birds"},
                         files={"file": ("field-notes.pdf", pdf.read_bytes(), "application/pdf")}).json(),
                api.post("/sources/text", json={"namespace": "birds", "text": "Swifts sleep while flying."}).json(),
                api.post("/sources/website", json={"namespace": "birds", "url": site.base + "/", "max_pages": 3}
                         ).json(),
            ]
            sources = [created["source"]["id"] for created in ids]
            deadline = time.monotonic() + 90
            while {api.get(f"/sources/{s}").json()["status"] for s in sources} != {"ready"}:
                assert time.monotonic() < deadline, [api.get(f"/sources/{s}").json() for s in sources]
                time.sleep(0.2)
            for query, source in (("puffins nest in burrows", sources[0]), ("swifts sleep flying", sources[1]),
                                  ("lighthouse keepers polish the great lens", sources[2])):
                hits = api.post("/search", json={"namespace": "birds", "query": query, "top_k": 3}).json()["results"]
                assert hits[0]["source_id"] == source, (query, hits[0])
            assert api.delete(f"/sources/{sources[0]}").status_code == 204
            hits = api.post("/search", json={"namespace": "birds", "query": "puffins nest in burrows"}).json()
            assert sources[0] not in {h["source_id"] for h in hits["results"]}
    finally:
        stop(server)
