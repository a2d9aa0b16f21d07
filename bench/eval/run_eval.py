"""Retrieval quality on the labelled set (bench/eval/questions.json): recall@1, recall@5 and MRR@10.

    python bench/eval/run_eval.py                      # SQLite in a temp dir
    python bench/eval/run_eval.py --backend postgres   # a fresh database `conveyor_eval` on 127.0.0.1

The documents (bench/eval/corpus/: copies of the project's README.md, docs/postgres.md and docs/http-worker.md as of
2026-12-04, frozen so that editing the docs does not move the figures or orphan a label, and two texts written for the
set) go through the real pipeline: `Ingestion.add_file`, the `process_file` job (extraction, 1,000-character
chunks, embedding, storage), then `Ingestion.search`. Each embedder (`hash`, and `minilm` when the `embed` extra is
installed) gets its own namespace; `keyword` does not depend on the embedder (it is reported once, from the first).

The set: 121 questions, each with its document and a verbatim passage of it that answers the question; a result is
relevant when it is a chunk of that document holding the passage (whitespace aside). Questions are phrased as a user
would ask them, most in other words than the passage's. Two labels were moved to the
reworded passages of the README of 2026-12-04; the two texts of corpus/ written for the set are CC0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingest_bench import fresh_url  # noqa: E402
from conveyor import Conveyor  # noqa: E402
from conveyor.ingest import Ingestion, minilm_onnx  # noqa: E402
from conveyor.ingest.store import close_stores  # noqa: E402
from conveyor.settings import Settings  # noqa: E402
from conveyor.testing import drain  # noqa: E402

PG_DB = "conveyor_eval"
CORPUS = Path(__file__).resolve().parent / "corpus"
DOCUMENTS = {name: CORPUS / name for name in
             ("README.md", "postgres.md", "http-worker.md", "keepers-handbook.md", "beekeepers-year.md")}
DEPTH = 10
QUESTIONS = [(q["question"], q["document"], q["passage"])
             for q in json.loads((Path(__file__).resolve().parent / "questions.json").read_text())]


def norm(text: str) -> str:
    return " ".join(text.split())


def ingest(ingestion: Ingestion, app: Conveyor, namespace: str) -> float:
    started = time.perf_counter()
    for name, path in DOCUMENTS.items():
        with path.open("rb") as handle:
            ingestion.add_file(namespace, name, handle)
    drain(app)
    failed = [s for s in ingestion.list_sources(namespace) if s.status != "ready"]
    assert not failed, [(s.name, s.error) for s in failed]
    return time.perf_counter() - started


def rank_of(results: list[dict[str, Any]], document: str, passage: str) -> int | None:
    wanted = norm(passage)
    for rank, hit in enumerate(results, start=1):
        if hit["source_name"] == document and wanted in norm(hit["text"]):
            return rank
    return None


def answerable(ingestion: Ingestion, namespace: str) -> list[int]:
    """Questions whose passage no chunk holds whole (cut by the chunking): counted as misses, and listed."""
    texts = {s.name: [norm(c["text"]) for c in ingestion.store.source_chunks(s.id)]
             for s in ingestion.list_sources(namespace)}
    return [i for i, (_q, doc, passage) in enumerate(QUESTIONS) if not any(norm(passage) in t for t in texts[doc])]


def evaluate(ingestion: Ingestion, namespace: str, mode: str) -> dict[str, Any]:
    ranks: list[int | None] = []
    latencies: list[float] = []
    for question, document, passage in QUESTIONS:
        started = time.perf_counter()
        results = ingestion.search(namespace, question, top_k=DEPTH, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        ranks.append(rank_of(results, document, passage))
    n = len(ranks)
    latencies.sort()
    return {
        "recall@1": round(sum(1 for r in ranks if r == 1) / n, 3),
        "recall@5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 3),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None) / n, 3),
        "search_p50_ms": round(latencies[n // 2], 2),
        "missed_at_5": [QUESTIONS[i][0] for i, r in enumerate(ranks) if r is None or r > 5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--embedders", default="hash,minilm", help="comma-separated: hash, minilm")
    parser.add_argument("--show-misses", action="store_true", help="list the questions missed at 5")
    args = parser.parse_args()
    figures: dict[str, Any] = {"backend": args.backend, "questions": len(QUESTIONS), "documents": list(DOCUMENTS)}
    with tempfile.TemporaryDirectory(prefix="conveyor-eval-") as tmp:
        url = fresh_url(args.backend, Path(tmp), "eval", PG_DB)
        app = Conveyor(url, settings=Settings(data_dir=f"{tmp}/data"))
        ingestion = Ingestion(app)
        keyword_done = False
        for embedder in args.embedders.split(","):
            if embedder == "minilm" and not minilm_onnx.available():
                figures["minilm"] = "skipped: the embed extra is not installed"
                continue
            os.environ["CONVEYOR_EMBEDDER"] = embedder
            namespace = f"eval-{embedder}"
            figures[f"{embedder}_ingest_s"] = round(ingest(ingestion, app, namespace), 2)
            figures["chunks"] = sum(s.chunk_count for s in ingestion.list_sources(namespace))
            figures["cut_by_chunking"] = [QUESTIONS[i][0] for i in answerable(ingestion, namespace)]
            modes = ("vector", "hybrid") + (() if keyword_done else ("keyword",))
            for mode in modes:
                key = "keyword" if mode == "keyword" else f"{embedder}_{mode}"
                figures[key] = evaluate(ingestion, namespace, mode)
                if not args.show_misses:
                    figures[key].pop("missed_at_5")
            keyword_done = True
        app.close()
        close_stores()
    print(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
