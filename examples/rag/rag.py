"""A RAG backend's ingestion and retrieval through Conveyor's built-in ingestion API (REST, SPEC section 5): a folder
of documents and a website become chunks and vectors in a namespace, then questions find the nearest chunks.

    conveyor serve                                            # the API and an integrated worker, in one shell
    cd examples/rag
    python rag.py ingest --folder handbook --namespace shop   # the files here: Markdown, text, CSV
    python rag.py ingest --site https://docs.example.org/ --max-pages 20 --namespace shop
    python rag.py search "how long do refunds take" --namespace shop --top-k 3

`--api` (or `CONVEYOR_API_URL`) names the server, default http://127.0.0.1:8000; `CONVEYOR_API_TOKEN` is sent when
set. Ingestion runs as jobs (`process_file`, `crawl_website`): the command follows each source until it is `ready`
or `failed`. A crawl of loopback or private addresses needs `CONVEYOR_CRAWL_ALLOW_PRIVATE=true` on the server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SUFFIXES = {".pdf", ".docx", ".csv", ".json", ".txt", ".md"}  # what process_file extracts


def client(api: str) -> httpx.Client:
    token = os.environ.get("CONVEYOR_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=api.rstrip("/") + "/api/v1", headers=headers, timeout=60)


def checked(response: httpx.Response) -> Any:
    if response.is_error:
        error = response.json().get("error", {})
        sys.exit(f"error: {response.status_code} {error.get('code')}: {error.get('message')}")
    return response.json()


def add_folder(api: httpx.Client, namespace: str, folder: Path) -> list[dict[str, Any]]:
    sources = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
        with path.open("rb") as data:
            files = {"file": (str(path.relative_to(folder)), data)}
            sources.append(checked(api.post("/sources/file", data={"namespace": namespace}, files=files))["source"])
    return sources


def add_site(api: httpx.Client, namespace: str, url: str, max_pages: int) -> dict[str, Any]:
    body = {"namespace": namespace, "url": url, "max_pages": max_pages, "include_subpages": True}
    return dict(checked(api.post("/sources/website", json=body))["source"])


def follow(api: httpx.Client, sources: list[dict[str, Any]], timeout: float) -> bool:
    """Wait until every source is ready or failed, printing each as it ends; True if all are ready."""
    deadline, waiting, ok = time.monotonic() + timeout, {s["id"]: s for s in sources}, True
    while waiting:
        for source_id in list(waiting):
            source = checked(api.get(f"/sources/{source_id}"))
            if source["status"] in ("ready", "failed"):
                del waiting[source_id]
                ok = ok and source["status"] == "ready"
                detail = f"{source['chunk_count']} chunks" if source["status"] == "ready" else source["error"]
                print(f"{source['status']:>6}  {source['kind']:<7} {source['name']}: {detail}", flush=True)
        if waiting and time.monotonic() > deadline:
            sys.exit(f"error: {len(waiting)} sources still processing after {timeout:.0f}s")
        time.sleep(0.2)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("CONVEYOR_API_URL", "http://127.0.0.1:8000"))
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="add a folder's documents and/or a website, then wait for them")
    ingest.add_argument("--namespace", "-n", required=True)
    ingest.add_argument("--folder", type=Path)
    ingest.add_argument("--site", help="the start URL of a crawl (same-site pages)")
    ingest.add_argument("--max-pages", type=int, default=20)
    ingest.add_argument("--timeout", type=float, default=600)
    search = commands.add_parser("search", help="the chunks nearest to a question")
    search.add_argument("query")
    search.add_argument("--namespace", "-n", required=True)
    search.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args(argv)

    with client(args.api) as api:
        if args.command == "search":
            body = {"namespace": args.namespace, "query": args.query, "top_k": args.top_k}
            for hit in checked(api.post("/search", json=body))["results"]:
                text = " ".join(hit["text"].split())
                print(f"{hit['score']:.3f}  {hit['source_name']} #{hit['chunk_index']}: {text}")
            return 0
        if args.folder is None and args.site is None:
            parser.error("give --folder, --site or both")
        sources = add_folder(api, args.namespace, args.folder) if args.folder else []
        if args.site:
            sources.append(add_site(api, args.namespace, args.site, args.max_pages))
        return 0 if follow(api, sources, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
