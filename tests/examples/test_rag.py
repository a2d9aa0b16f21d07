"""examples/rag: `conveyor serve` (API and integrated worker), a small website on loopback, and the example's
command line ingesting the handbook folder and the site, then searching them."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.examples.conftest import Processes

PAGES = {
    "index.html": '<html><head><title>Care guide</title></head><body><h1>Care guide</h1><p>Wash the linen jacket '
                  'cold, inside out, and hang it to dry.</p><a href="/leather.html">Leather</a></body></html>',
    "leather.html": "<html><head><title>Leather</title></head><body><h1>Leather</h1><p>Feed leather boots with "
                    "beeswax balm twice a year.</p></body></html>",
}


def test_ingest_a_folder_and_a_website_then_search(processes: Processes, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for name, html in PAGES.items():
        (site / name).write_text(html)
    site_url = processes.server("rag", sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1",
                                "--directory", str(site))
    processes.env["CONVEYOR_CRAWL_ALLOW_PRIVATE"] = "true"  # the test site is on loopback
    api = processes.server("rag", sys.executable, "-m", "conveyor", "serve", "--port", "{port}")

    def rag(*args: str) -> str:
        return processes.run("rag", sys.executable, "rag.py", "--api", api, *args)

    out = rag("ingest", "--folder", "handbook", "--site", site_url + "/", "--namespace", "shop")
    ended = [line.split() for line in out.splitlines()]  # status, kind, name:, detail
    assert all(e[0] == "ready" for e in ended), out
    assert sorted(e[2].rstrip(":") for e in ended if e[1] == "file") == ["refunds.md", "shipping.txt", "stores.csv"]
    crawls = [e for e in ended if e[1] == "website"]
    assert len(crawls) == 1 and crawls[0][3:] == ["2", "chunks"], f"the crawl should store both pages: {out}"

    top = rag("search", "refund within 30 days of purchase", "--namespace", "shop", "--top-k", "1")
    assert "refunds.md" in top and "within 30 days of purchase" in top
    top = rag("search", "beeswax balm for leather boots", "--namespace", "shop", "--top-k", "1")
    assert "beeswax balm" in top
    assert rag("search", "refund", "--namespace", "another-namespace") == ""
