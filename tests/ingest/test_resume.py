"""A crawl whose worker is killed (SIGKILL) mid-way continues from its checkpoint in the next worker; the pages'
steps (its workflow's) that the kill interrupted run again, and no page is stored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conveyor import Conveyor, JobStatus
from conveyor.ingest import Ingestion
from conveyor.ingest.store import close_stores, open_store
from conveyor.settings import Settings
from tests.ingest.conftest import Site, wait_until


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # two slots: the crawl, and the steps of the pages it fetched, which store them meanwhile
        [sys.executable, "-m", "conveyor", "worker", "--processes", "0", "--concurrency", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_killed_crawl_resumes_from_its_checkpoint(db_url: str, tmp_path: Path, site: Site) -> None:
    url = db_url
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
           "CONVEYOR_CRAWL_ALLOW_PRIVATE": "true", "CONVEYOR_LEASE_S": "2", "CONVEYOR_POLL_INTERVAL_S": "0.1"}
    app = Conveyor(url, settings=Settings(data_dir=str(tmp_path / "data"), crawl_allow_private=True))
    ingestion = Ingestion(app)
    source, job = ingestion.add_website("web", site.base + "/", max_pages=5)
    site.hold_path = "/members.html"  # the fourth page, breadth first
    store = open_store(url)
    first = start_worker(env)
    try:
        assert site.held.wait(60), "the crawl never reached the fourth page"
        checkpoint = wait_until(lambda: (store.load_checkpoint(source.id) or {}).get("pages") == 3 and
                                store.load_checkpoint(source.id), what="the checkpoint after three pages")
        assert isinstance(checkpoint, dict)
        wait_until(lambda: store.get_source(source.id).chunk_count == 3,  # type: ignore[union-attr]
                   what="the three pages' steps stored their chunks")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    site.hold_path = None
    site.release.set()
    assert app.require_job(job.id).status is JobStatus.PROCESSING

    second = start_worker(env)
    try:
        done = ingestion.wait(source.id, timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert done.status == "ready", done.error
    assert done.chunk_count == 5
    for path in ("/", "/about.html", "/history.html", "/events.html"):
        assert site.fetched(path) == 1, f"{path} fetched {site.fetched(path)} times"
    assert site.fetched("/members.html") == 2  # the page in flight at the kill, fetched again
    assert site.fetched("/private.html") == 0
    chunks = store.source_chunks(source.id)
    assert sorted(c["chunk_index"] for c in chunks) == [0, 1, 2, 3, 4]
    assert len({c["metadata"]["url"] for c in chunks}) == 5
    finished = app.require_job(job.id)
    assert finished.status is JobStatus.COMPLETED and finished.attempts == 2
    app.close()
    close_stores()
