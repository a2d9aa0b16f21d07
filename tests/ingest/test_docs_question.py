"""The done-when of semantic search: ingest the project's docs and ask "where are jobs stored"; the chunk that
says it comes first (in-process; the same with `conveyor serve` is described in the README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.ingest import Ingestion, minilm_onnx
from conveyor.testing import drain
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_where_are_jobs_stored(sqlite_ingest_app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    if not minilm_onnx.available() and not IN_CI:
        pytest.skip("the embed extra is not installed")
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "auto")  # the product's default: MiniLM when the extra is there
    ingestion = Ingestion(sqlite_ingest_app)
    for path in DOCS:
        with path.open("rb") as handle:
            ingestion.add_file("docs", path.name, handle)
    drain(sqlite_ingest_app)
    assert {s.status for s in ingestion.list_sources("docs")} == {"ready"}
    assert ingestion.store.namespace_model("docs") == ("all-MiniLM-L6-v2", 384)
    answers = (  # the README's and the concepts page's sentences that say it
        "jobs (with their arguments, results, progress and history) are stored in one database",
        "Conveyor stores jobs, their arguments, results, progress and history in one database",
    )
    for mode in ("hybrid", "vector"):
        first = ingestion.search("docs", "where are jobs stored", top_k=5, mode=mode)[0]
        text = " ".join(first["text"].split())
        assert any(answer in text for answer in answers), (mode, first["source_name"], text[:200])
