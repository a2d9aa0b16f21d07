"""What `conveyor check` prints about ingestion (through `print_ingest_checks`, the hook the CLI calls)."""

from __future__ import annotations

import sys

import pytest

from conveyor.ingest import minilm_onnx
from conveyor.ingest.check import ingest_checks, print_ingest_checks


def test_hashing_fallback_says_what_to_install(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "auto")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the `embed` extra were not installed
    lines = ingest_checks(sqlite_url)
    assert lines[0].level == "warn" and "hashing fallback in use" in lines[0].message
    assert "pip install 'conveyor-jobs[embed]'" in lines[0].message
    assert lines[1].level == "ok" and "exact NumPy scan" in lines[1].message and "SQLite FTS5" in lines[1].message
    printed: list[str] = []
    print_ingest_checks(sqlite_url, printed.append)
    assert printed[0].startswith("[yellow]warn[/] embeddings: hashing fallback in use")
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "hash")
    monkeypatch.delitem(sys.modules, "onnxruntime")
    if minilm_onnx.available():
        assert "CONVEYOR_EMBEDDER=hash chooses it" in ingest_checks(sqlite_url)[0].message


@pytest.mark.postgres
def test_postgres_search_is_named(pg_url: str) -> None:
    line = ingest_checks(pg_url)[1]
    assert "PostgreSQL full text (ts_rank)" in line.message
    assert ("pgvector" in line.message) or ("exact NumPy scan" in line.message)


@pytest.mark.skipif(not minilm_onnx.available(), reason="the embed extra is not installed")
def test_semantic_embedder_is_ok(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "auto")
    line = ingest_checks(sqlite_url)[0]
    assert line.level == "ok" and "all-MiniLM-L6-v2 on ONNX Runtime" in line.message
