"""`conveyor ingest file|text|url` and `conveyor search`: enqueue through the Python API, wait with a progress bar.

The ingestion plugin (`conveyor.ingest.plugin`) adds these to the command line, built on its shared helpers
(`conveyor.cli.common`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from conveyor.cli.common import (
    AppOption,
    DbOption,
    JsonOption,
    ago,
    fail,
    handle_errors,
    load_app,
    out,
    print_json,
    progress_bar,
)
from conveyor.ingest.service import Ingestion
from conveyor.ingest.store import SearchFilter

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.ingest.store import Source
    from conveyor.job import Job

ingest_app = typer.Typer(help="Ingest files, text and websites into searchable vectors.", no_args_is_help=True)

NamespaceOption = Annotated[str, typer.Option("--namespace", "-n", help="The namespace (one per agent or project).")]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="Return at once with the source and job ids.")]
TimeoutOption = Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")]


def _open(db: str | None, app: str | None) -> tuple[Conveyor, Ingestion]:
    conveyor = load_app(db, app)
    return conveyor, Ingestion(conveyor)


def _finish(
    conveyor: Conveyor, ingestion: Ingestion, source: Source, job: Job, *, wait: bool, as_json: bool,
    timeout: float | None,
) -> None:
    if wait:
        source = _wait(conveyor, ingestion, source, job, timeout, show_bar=not as_json)
    if as_json:
        print_json({"source": source.to_dict(), "job_id": job.id})
    elif not wait:
        out.print(f"source {source.id} ({source.kind}) {source.status}; job {job.id}")
    else:
        out.print(f"source {source.id} {source.status}: {source.chunk_count} chunks in namespace {source.namespace}")
        result = conveyor.require_job(job.id).result
        if source.kind == "website" and isinstance(result, dict) and "pages" in result:
            skipped = result.get("skipped") or {}
            out.print(f"{result['pages']} pages crawled, {len(skipped)} skipped", markup=False)
            for url, reason in list(skipped.items())[:10]:
                out.print(f"  skipped {url}: {reason}", markup=False)
    if source.status == "failed":
        fail(f"source {source.id} failed: {source.error}")


def _wait(
    conveyor: Conveyor, ingestion: Ingestion, source: Source, job: Job, timeout: float | None, *, show_bar: bool
) -> Source:
    deadline = None if timeout is None else time.monotonic() + timeout
    with progress_bar(show_bar) as progress:
        bar = progress.add_task(f"{job.type} {source.status}", total=100)
        # Until the source's last job ends, after any retries: a crawl's is its workflow's step `ready`, which marks
        # the source ready after the crawl and every page's step. The bar shows the crawl, then that step.
        while not (last := ingestion.final_job(job)).status.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                fail(f"timed out: source {source.id} is still {source.status} after {timeout}s", 3)
            time.sleep(0.2)
            job = conveyor.require_job(job.id)
            shown = last if job.status.is_terminal else job
            source = ingestion.get_source(source.id)
            info: dict[str, Any] = shown.progress_info or {}
            stage = info.get("stage") or shown.status.value
            counts = f" {info['done']}/{info['total']}" if "done" in info and "total" in info else ""
            progress.update(bar, completed=shown.progress, description=f"{job.type} {stage}{counts}")
    return ingestion.get_source(source.id)


@ingest_app.command("file")
@handle_errors
def ingest_file(
    path: Annotated[Path, typer.Argument(help="A PDF, DOCX, CSV, JSON, TXT or MD file.")],
    namespace: NamespaceOption = "default",
    db: DbOption = None,
    app: AppOption = None,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a file and index it (job `process_file`)."""
    conveyor, ingestion = _open(db, app)
    if not path.is_file():
        fail(f"no such file: {path}", 2)
    with path.open("rb") as handle:
        source, job = ingestion.add_file(namespace, path.name, handle)
    _finish(conveyor, ingestion, source, job, wait=not no_wait, as_json=as_json, timeout=timeout)


@ingest_app.command("text")
@handle_errors
def ingest_text(
    text: Annotated[str, typer.Argument(help="The text; `-` reads it from standard input.")],
    namespace: NamespaceOption = "default",
    name: Annotated[str | None, typer.Option(help="A name for the source (default: its first line).")] = None,
    db: DbOption = None,
    app: AppOption = None,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Index a text (job `process_text`)."""
    conveyor, ingestion = _open(db, app)
    body = sys.stdin.read() if text == "-" else text
    source, job = ingestion.add_text(namespace, body, name)
    _finish(conveyor, ingestion, source, job, wait=not no_wait, as_json=as_json, timeout=timeout)


@ingest_app.command("url")
@handle_errors
def ingest_url(
    url: Annotated[str, typer.Argument(help="The start page (http or https).")],
    namespace: NamespaceOption = "default",
    max_pages: Annotated[int, typer.Option(help="Most pages to fetch.")] = 10,
    subpages: Annotated[bool, typer.Option(help="Follow same-site links (--no-subpages: this page only).")] = True,
    db: DbOption = None,
    app: AppOption = None,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Crawl a website and index its pages (job `crawl_website`)."""
    conveyor, ingestion = _open(db, app)
    source, job = ingestion.add_website(namespace, url, max_pages, subpages)
    _finish(conveyor, ingestion, source, job, wait=not no_wait, as_json=as_json, timeout=timeout)


@ingest_app.command("list")
@handle_errors
def ingest_list(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Only this namespace.")] = None,
    db: DbOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sources, newest first."""
    _conveyor, ingestion = _open(db, app)
    sources = ingestion.list_sources(namespace)
    if as_json:
        print_json({"sources": [s.to_dict() for s in sources]})
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=36)
    for column in ("namespace", "kind", "status", "chunks", "name", "created"):
        table.add_column(column, overflow="ellipsis", no_wrap=column != "name")
    for s in sources:
        table.add_row(s.id, s.namespace, s.kind, s.status, str(s.chunk_count), s.name[:60], ago(s.created_at))
    out.print(table if sources else "no sources")


@ingest_app.command("delete")
@handle_errors
def ingest_delete(
    source_id: Annotated[str, typer.Argument(metavar="ID")],
    db: DbOption = None,
    app: AppOption = None,
) -> None:
    """Delete a source: cancel its jobs, delete its vectors, then the source."""
    _conveyor, ingestion = _open(db, app)
    ingestion.delete_source(source_id)
    out.print(f"source {source_id} deleted")


@handle_errors
def search_command(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    namespace: NamespaceOption = "default",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many results (1 to 100).")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid (vector and keyword, fused), vector or keyword.")] = "hybrid",
    source: Annotated[list[str] | None, typer.Option("--source", help="Only this source id (repeatable).")] = None,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only sources of this kind (repeatable).")] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help="Only chunks whose metadata has KEY=VALUE.")] = None,
    db: DbOption = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search a namespace: the best chunks first, with their scores and which lists (vector, keyword) found them."""
    pairs = [m.partition("=") for m in meta or []]
    if any(not key or not sep for key, sep, _ in pairs):
        fail("--meta takes KEY=VALUE", 2)
    filters = SearchFilter(tuple(source or ()), tuple(kind or ()), {k: v for k, _, v in pairs})
    _conveyor, ingestion = _open(db, app)
    results = ingestion.search(namespace, query, top_k, mode=mode, filters=filters)
    if as_json:
        print_json({"results": results})
        return
    if not results:
        out.print("no results")
        return
    table = Table(box=None, header_style="bold")
    for column in ("score", "matched", "source", "chunk", "text"):
        table.add_column(column)
    for r in results:
        where = r.get("url") or r.get("source_name") or r["source_id"]
        snippet = " ".join(r["text"].split())
        table.add_row(f"{r['score']:.3f}", "+".join(r["matched"]), str(where), str(r["chunk_index"]), snippet[:160])
    out.print(table)


__all__ = ["ingest_app", "search_command"]
