"""Ingestion benchmark: prints one JSON object of figures.

    python bench/ingest_bench.py                        # SQLite file in a temp dir
    python bench/ingest_bench.py --backend postgres     # a fresh database `conveyor_ingest_bench` on 127.0.0.1
    python bench/ingest_bench.py --quick                # small sizes, to check that it runs

Measures: pages crawled per second from a local site on loopback (the crawler alone, and the whole `crawl_website`
job: fetch, extract, chunk, embed and store); chunks (of at least 256 tokens) embedded per second by the hashing
embedder and, when the `embed` extra is installed, MiniLM on ONNX Runtime, and its time for one short query; search
latency (top 5) over N stored chunks of prose, first search (loads the namespace's matrix) and warm searches (p50,
p95) in each mode (vector, keyword, hybrid; the query's embedding not included); on SQLite, sqlite-vec's exact KNN
over the same number of vectors when sqlean-py and sqlite-vec are installed. Retrieval quality: bench/eval/.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from conveyor import Conveyor  # noqa: E402
from conveyor.ingest import Ingestion  # noqa: E402
from conveyor.ingest.chunk import Chunk  # noqa: E402
from conveyor.ingest.crawl import crawl  # noqa: E402
from conveyor.ingest.embed import HashingEmbedder  # noqa: E402
from conveyor.ingest.fetch import CrawlPolicy  # noqa: E402
from conveyor.ingest.store import NewChunks, close_stores, open_store  # noqa: E402
from conveyor.settings import Settings  # noqa: E402
from conveyor.testing import drain  # noqa: E402

PG_ADMIN = os.environ.get("CONVEYOR_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = "conveyor_ingest_bench"
WORDS = (
    "the queue worker retries jobs with backoff while the lease is renewed by a heartbeat and progress is written "
    "in batches so that a dashboard can show every stage of extraction chunking embedding and storing"
).split()


def text_of(i: int, words: int) -> str:
    rng = np.random.default_rng(i)
    picked = rng.choice(len(WORDS), size=words)
    sentences = [" ".join(WORDS[j] for j in picked[k : k + 12]).capitalize() + "." for k in range(0, words, 12)]
    return f"Page {i}. " + " ".join(sentences)


class SiteHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # headers and body in one write: no Nagle/delayed-ACK stall on keep-alive connections
    pages = 200

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body, kind = b"User-agent: *\nAllow: /\n", "text/plain"
        else:
            try:
                i = int(self.path.strip("/").removesuffix(".html") or 0)
            except ValueError:
                i = -1
            if not 0 <= i < self.pages:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            links = "".join(f'<a href="/{(i * 3 + k) % self.pages}.html">next {k}</a>' for k in range(1, 4))
            body = (f"<html><head><title>Page {i}</title></head><body><p>{text_of(i, 600)}</p>{links}"
                    "</body></html>").encode()
            kind = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_site(pages: int) -> tuple[http.server.ThreadingHTTPServer, str]:
    SiteHandler.pages = pages
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def fresh_url(backend: str, workdir: Path, phase: str, pg_db: str = PG_DB) -> str:
    """An empty database: a SQLite file in `workdir`, or the PostgreSQL database `pg_db` made anew."""
    if backend == "sqlite":
        return f"sqlite:///{workdir}/{phase}.db"
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{pg_db}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_db}"


def bench_crawl(base: str, pages: int) -> float:
    fetched = 0

    def on_page(page: Any, state: Any) -> None:
        nonlocal fetched
        fetched += page is not None

    started = time.perf_counter()
    crawl(base, max_pages=pages, include_subpages=True, policy=CrawlPolicy(allow_private=True), on_page=on_page)
    elapsed = time.perf_counter() - started
    assert fetched == pages, fetched
    return pages / elapsed


def bench_crawl_job(base: str, pages: int, url: str, workdir: Path) -> tuple[float, int]:
    """The crawl job with the hashing embedder: the crawler's pipeline, not the model (measured on its own)."""
    os.environ["CONVEYOR_EMBEDDER"] = "hash"
    settings = Settings(data_dir=str(workdir / "data"), crawl_allow_private=True, poll_interval_s=0.05)
    app = Conveyor(url, settings=settings)
    ingestion = Ingestion(app)
    source, _job = ingestion.add_website("bench-web", base, max_pages=pages)
    started = time.perf_counter()
    drain(app)
    elapsed = time.perf_counter() - started
    done = ingestion.get_source(source.id)
    assert done.status == "ready", done.error
    app.close()
    close_stores()
    del os.environ["CONVEYOR_EMBEDDER"]
    return pages / elapsed, done.chunk_count


VOCABULARY = 50_000
ZIPF_S = 1.07


def vocabulary() -> list[str]:
    """The words of the project's docs and the evaluation texts, most frequent first, then made-up words up to a
    real vocabulary's size: chunks drawn from them by a Zipf law share common words and differ in rare ones, as real
    text does (the full-text index's cost depends on that). The questions' words are among the common ones."""
    from collections import Counter

    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    paths += sorted((ROOT / "bench" / "eval" / "corpus").glob("*.md"))
    counts = Counter(w.lower() for p in paths for w in re.findall(r"[A-Za-z]+", p.read_text()))
    words = [w for w, _ in counts.most_common()]
    return words + [f"zq{i:x}" for i in range(VOCABULARY - len(words))]


_ZIPF_CDF: Any = None


def prose(rng: Any, vocab: list[str], words: int) -> str:
    """`words` words drawn from `vocab` by a Zipf law (exponent ZIPF_S) over its ranks."""
    global _ZIPF_CDF
    if _ZIPF_CDF is None or len(_ZIPF_CDF) != len(vocab):
        weights = 1.0 / np.arange(1, len(vocab) + 1) ** ZIPF_S
        _ZIPF_CDF = np.cumsum(weights) / weights.sum()
    ranks = np.minimum(np.searchsorted(_ZIPF_CDF, rng.random(words)), len(vocab) - 1)
    return " ".join(vocab[r] for r in ranks)


def bench_embed(embedder: Any, n: int, batch: int = 64) -> dict[str, float]:
    """Chunks of at least 256 tokens (MiniLM truncates there), about 1,000 characters like the default chunks."""
    rng = np.random.default_rng(3)
    vocab = vocabulary()
    texts = [prose(rng, vocab, 300) for _ in range(n)]
    embedder.embed(texts[:8])  # warm-up (the session, caches, threads)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, batch):
        embedder.embed(texts[i : i + batch])
    out = {
        "chunks_per_s": round(n / (time.perf_counter() - started), 2),
        # per second of this process's CPU time: less sensitive to other work on a shared machine
        "chunks_per_cpu_s": round(n / (time.process_time() - cpu), 2),
    }
    tokenizer = getattr(embedder, "tokenizer", None)
    if tokenizer is not None:
        out["tokens_per_chunk_min"] = min(len(tokenizer.encode(t).ids) for t in texts[:50])
    return out


def bench_search(url: str, n: int, searches: int) -> dict[str, float]:
    """N chunks of Zipf-drawn prose stored in one namespace, with random unit vectors (the ranking cost of vectors
    does not depend on their content); then `searches` questions of the evaluation set in each mode."""
    embedder = HashingEmbedder()
    store = open_store(url)
    per_source = 5000
    rng = np.random.default_rng(7)
    vocab = vocabulary()
    started = time.perf_counter()
    for s in range(0, n, per_source):
        count = min(per_source, n - s)
        source = store.insert_source(f"bench-{s}", "bench", f"source {s}", "text")
        texts = [prose(rng, vocab, 150) for _ in range(count)]
        chunks = [Chunk(i, t, len(t), 150) for i, t in enumerate(texts)]
        vectors = rng.standard_normal((count, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.replace_chunks(source.id, NewChunks(chunks, vectors, embedder.name))
    store_s = time.perf_counter() - started
    if url.startswith("postgresql"):  # what autovacuum does within a minute of such a load: statistics
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE ingest_chunks")
    questions = [q["question"] for q in json.loads((ROOT / "bench/eval/questions.json").read_text())]
    queries = [(q, embedder.embed([q])[0]) for q in (questions * (searches // len(questions) + 1))[:searches]]
    figures: dict[str, Any] = {"search_chunks": n, "store_chunks_per_s": round(n / store_s, 1),
                               "vector_index": store.vector_index}
    started = time.perf_counter()
    store.search("bench", queries[0][1], 5, embedder.name)
    figures["search_first_ms"] = round((time.perf_counter() - started) * 1000, 2)  # loads the namespace's matrix
    for mode in ("vector", "keyword", "hybrid"):
        latencies = []
        for text, vector in queries:
            started = time.perf_counter()
            store.search("bench", vector, 5, embedder.name, text=text, mode=mode)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        figures[f"search_{mode}_p50_ms"] = round(statistics.median(latencies), 2)
        figures[f"search_{mode}_p95_ms"] = round(latencies[int(len(latencies) * 0.95) - 1], 2)
    close_stores()
    return figures


def bench_sqlite_vec(n: int, searches: int) -> dict[str, Any]:
    """sqlite-vec's exact KNN (vec0, float[384]) through sqlean-py, when both are installed: the figure behind using
    the NumPy matrix instead (see conveyor/ingest/store/_sqlite.py)."""
    try:
        import sqlean
        import sqlite_vec
    except ImportError as exc:
        return {"sqlite_vec_skipped": str(exc)}
    conn = sqlean.connect(":memory:")
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute("CREATE VIRTUAL TABLE v USING vec0(embedding float[384])")
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    conn.executemany("INSERT INTO v (rowid, embedding) VALUES (?, ?)", ((i, vectors[i].tobytes()) for i in range(n)))
    latencies = []
    for i in range(searches):
        query = vectors[i % n].tobytes()
        started = time.perf_counter()
        conn.execute("SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = 5", (query,)).fetchall()
        latencies.append((time.perf_counter() - started) * 1000)
    conn.close()
    return {"sqlite_vec_knn_p50_ms": round(statistics.median(latencies), 2)}


def crawl_figures(backend: str, pages: int, workdir: Path) -> dict[str, Any]:
    server, base = serve_site(pages)
    try:
        figures: dict[str, Any] = {"crawl_pages": pages, "crawl_pages_per_s": round(bench_crawl(base, pages), 1)}
        rate, chunks = bench_crawl_job(base, pages, fresh_url(backend, workdir, "crawl"), workdir)
        figures["crawl_job_pages_per_s"] = round(rate, 1)
        figures["crawl_job_chunks"] = chunks
        return figures
    finally:
        server.shutdown()
        server.server_close()


def embed_figures(hash_n: int, minilm_n: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"embed_hash_chunks_per_s": bench_embed(HashingEmbedder(), hash_n)["chunks_per_s"]}
    try:
        from conveyor.ingest import minilm_onnx

        minilm = minilm_onnx.shared()
    except Exception as exc:  # optional: report why it was skipped
        return {**figures, "embed_minilm_chunks_per_s": None, "embed_minilm_skipped": str(exc)}
    measured = bench_embed(minilm, minilm_n, batch=minilm_onnx.BATCH)
    figures["embed_minilm_chunks_per_s"] = measured["chunks_per_s"]
    figures["embed_minilm_chunks_per_cpu_s"] = measured["chunks_per_cpu_s"]
    figures["embed_minilm_tokens_per_chunk"] = measured.get("tokens_per_chunk_min")
    figures["embed_minilm_threads"] = minilm_onnx.cpu_threads()
    started = time.perf_counter()
    for i in range(50):
        minilm.embed([f"where are jobs stored {i}"])
    figures["embed_minilm_query_ms"] = round((time.perf_counter() - started) * 1000 / 50, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pages", type=int, default=200, help="pages of the local site to crawl")
    parser.add_argument("--embed-n", type=int, default=5000, help="chunks for the default embedder")
    parser.add_argument("--minilm-n", type=int, default=256, help="chunks for the MiniLM embedder (if installed)")
    parser.add_argument("--search-n", type=int, default=100_000, help="stored chunks searched over")
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it runs")
    parser.add_argument("--parts", default="crawl,embed,search", help="which measures: crawl, embed, search")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.embed_n, args.minilm_n, args.search_n, args.searches = 20, 300, 32, 5000, 20
    figures: dict[str, Any] = {
        "backend": args.backend,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="conveyor-ingest-bench-") as tmp:
        workdir = Path(tmp)
        if "crawl" in parts:
            figures.update(crawl_figures(args.backend, args.pages, workdir))
        if "embed" in parts:
            figures.update(embed_figures(args.embed_n, args.minilm_n))
        if "search" in parts:
            figures.update(bench_search(fresh_url(args.backend, workdir, "search"), args.search_n, args.searches))
            if args.backend == "sqlite":
                figures.update(bench_sqlite_vec(args.search_n, min(args.searches, 50)))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
