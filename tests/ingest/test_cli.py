"""`conveyor ingest` and `conveyor search` as real processes, with a real worker process beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ingest.conftest import Site, make_docx, stop


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
        "CONVEYOR_CRAWL_ALLOW_PRIVATE": "true",
        "CONVEYOR_POLL_INTERVAL_S": "0.1",
    }


def conveyor(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], env=env, capture_output=True, text=True, timeout=90, input=stdin,
        check=False,
    )


@pytest.fixture
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    conveyor(env, "migrate")
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "--processes", "0", "--concurrency", "2"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    yield process
    stop(process)


def test_ingest_file_waits_until_ready_then_search(env: dict[str, str], worker: object, tmp_path: Path) -> None:
    path = make_docx(tmp_path / "notes.docx", ["Otters hold hands while they sleep so they do not drift apart."])
    done = conveyor(env, "ingest", "file", str(path), "--namespace", "zoo", "--json")
    assert done.returncode == 0, done.stderr
    source = json.loads(done.stdout)["source"]
    assert source["status"] == "ready" and source["chunk_count"] == 1 and source["name"] == "notes.docx"
    found = conveyor(env, "search", "otters hold hands", "--namespace", "zoo", "--json")
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert results[0]["source_id"] == source["id"]
    people = conveyor(env, "search", "otters hold hands", "-n", "zoo")
    assert people.returncode == 0 and "Otters hold hands" in people.stdout
    listed = conveyor(env, "ingest", "list", "-n", "zoo", "--json")
    assert [s["id"] for s in json.loads(listed.stdout)["sources"]] == [source["id"]]
    assert source["id"] in conveyor(env, "ingest", "list").stdout
    deleted = conveyor(env, "ingest", "delete", source["id"])
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert json.loads(conveyor(env, "search", "otters", "-n", "zoo", "--json").stdout) == {"results": []}
    again = conveyor(env, "ingest", "delete", source["id"])
    assert again.returncode == 2 and "not found" in again.stderr


def test_ingest_text_from_stdin_and_url(env: dict[str, str], worker: object, site: Site) -> None:
    text = conveyor(env, "ingest", "text", "-", "-n", "kb", "--name", "facts", "--json",
                    stdin="Honey never spoils if it is sealed.")
    assert text.returncode == 0, text.stderr
    assert json.loads(text.stdout)["source"]["status"] == "ready"
    url = conveyor(env, "ingest", "url", site.base + "/", "-n", "kb", "--max-pages", "3")
    assert url.returncode == 0, url.stderr
    assert "ready: 3 chunks in namespace kb" in url.stdout
    assert "3 pages crawled" in url.stdout
    assert len(site.pages_fetched()) == 3


def test_no_wait_and_errors(env: dict[str, str], tmp_path: Path) -> None:
    queued = conveyor(env, "ingest", "text", "Queued only.", "--no-wait", "--json")
    assert queued.returncode == 0, queued.stderr
    body = json.loads(queued.stdout)
    assert body["source"]["status"] == "pending" and body["job_id"]
    refused = conveyor(env, "ingest", "url", "javascript:alert(1)")
    assert refused.returncode == 2 and "only http and https" in refused.stderr
    missing = conveyor(env, "ingest", "file", str(tmp_path / "nope.pdf"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    waiting = conveyor(env, "ingest", "text", "Nobody runs this.", "--timeout", "1")
    assert waiting.returncode == 3 and "timed out" in waiting.stderr


def test_a_bad_file_fails_with_its_reason(env: dict[str, str], worker: object, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(os.urandom(500))
    failed = conveyor(env, "ingest", "file", str(bad))
    assert failed.returncode == 1
    assert "failed: not a readable PDF" in failed.stderr
