"""End to end on every backend: sources of each kind become `ready`, are searchable, and can be deleted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conveyor import Conveyor, JobStatus
from conveyor.errors import InvalidArgumentsError
from conveyor.ingest import FileTooLargeError, Ingestion, ModelMismatchError, SourceNotFoundError
from conveyor.ingest.store import NewChunks, open_store
from conveyor.testing import drain
from tests.ingest.conftest import Site, make_docx, make_pdf

FILLER = "\n\n".join(
    f"Paragraph {i} talks about nothing in particular, filling the document with ordinary words." for i in range(30)
)


def files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """One real file of each kind, each with a sentence found nowhere else."""
    out: dict[str, tuple[Path, str]] = {}
    sentence = "The violet submarine surfaced beside the glacier at midnight."
    out["pdf"] = (make_pdf(tmp_path / "report.pdf", ["Annual report.", sentence]), sentence)
    sentence = "Seven orange kites drifted over the cathedral roof."
    out["docx"] = (make_docx(tmp_path / "letter.docx", [FILLER, sentence, FILLER]), sentence)
    sentence = "name: quokka; habitat: Rottnest Island; diet: leaves and grasses"
    csv = tmp_path / "animals.csv"
    csv.write_text("name,habitat,diet\nwombat,forest,roots\nquokka,Rottnest Island,leaves and grasses\n")
    out["csv"] = (csv, sentence)
    sentence = "inventory.tools[1].name: titanium spanner"
    js = tmp_path / "inventory.json"
    js.write_text(json.dumps({"inventory": {"tools": [{"name": "hammer"}, {"name": "titanium spanner"}]}}))
    out["json"] = (js, sentence)
    sentence = "Grandmother's lemon tart needs exactly four eggs and a pinch of salt."
    txt = tmp_path / "recipe.txt"
    txt.write_text(FILLER + "\n\n" + sentence + "\n\n" + FILLER)
    out["txt"] = (txt, sentence)
    sentence = "Deploy the penguin service with the blue-green strategy."
    md = tmp_path / "runbook.md"
    md.write_text("# Runbook\n\n" + FILLER + "\n\n## Deploying\n\n" + sentence + "\n")
    out["md"] = (md, sentence)
    return out


def test_every_kind_becomes_ready_and_searchable(ingestion: Ingestion, ingest_app: Conveyor, tmp_path: Path,
                                                 site: Site) -> None:
    made = {}
    for kind, (path, sentence) in files(tmp_path).items():
        source, job = ingestion.add_file("agent-1", path.name, path.read_bytes())
        assert source.status == "pending" and source.kind == "file" and job.type == "process_file"
        assert job.priority == 5 and f"source:{source.id}" in job.tags
        made[kind] = (source, sentence)
    text_sentence = "Octopuses have three hearts and blue blood."
    text_source, text_job = ingestion.add_text("agent-1", FILLER + "\n\n" + text_sentence, name="sea facts")
    assert text_job.type == "process_text" and text_job.priority == 10
    made["text"] = (text_source, text_sentence)
    web_source, web_job = ingestion.add_website("agent-1", site.base + "/", max_pages=5)
    assert web_job.type == "crawl_website" and web_job.priority == 3
    storm = "In 1887 a storm tore the lantern room away and the keepers rebuilt it in nine days."
    made["website"] = (web_source, storm)

    drain(ingest_app)

    for kind, (source, sentence) in made.items():
        done = ingestion.get_source(source.id)
        assert done.status == "ready", (kind, done.error)
        assert done.chunk_count >= 1
        results = ingestion.search("agent-1", sentence, top_k=3)
        assert results[0]["source_id"] == source.id, (kind, results[0])
        assert results[0]["matched"] == ["vector", "keyword"]  # the sentence itself: both lists find it
        assert ingestion.search("agent-1", sentence, top_k=1, mode="vector")[0]["score"] > 0.2
        first = results[0]
        for name in ("source_id", "namespace", "chunk_index", "text", "char_count", "word_count", "created_at"):
            assert name in first
        assert first["namespace"] == "agent-1"
        assert first["char_count"] == len(first["text"])
    web = ingestion.search("agent-1", made["website"][1], top_k=1)[0]
    assert web["url"] == site.base + "/history.html" and web["title"] == "History"
    assert site.fetched("/private.html") == 0
    assert ingestion.get_source(web_source.id).chunk_count == 5
    crawled = ingest_app.require_job(web_job.id).result
    assert crawled["pages"] == 5 and crawled["chunk_count"] == 5
    assert crawled["skipped"][site.base + "/private.html"] == "disallowed by robots.txt"
    assert [s.id for s in ingestion.list_sources("agent-1")][::-1] == [s.id for s, _ in made.values()]
    assert ingestion.list_sources("agent-2") == []
    assert ingestion.search("agent-2", text_sentence) == []
    job = ingest_app.require_job(text_job.id)
    assert job.status is JobStatus.COMPLETED and job.progress == 100
    assert job.result == {"source_id": text_source.id, "chunk_count": ingestion.get_source(text_source.id).chunk_count}


def test_delete_removes_the_source_from_search(ingestion: Ingestion, ingest_app: Conveyor) -> None:
    keep, _ = ingestion.add_text("ns", "Giraffes sleep standing up for short naps.", name="giraffes")
    gone, _ = ingestion.add_text("ns", "The moon is drifting away from the earth slowly.", name="moon")
    drain(ingest_app)
    assert ingestion.search("ns", "moon drifting away")[0]["source_id"] == gone.id
    blob = Path(ingestion.store.get_source(gone.id).location or "")
    assert blob.is_file() and blob.parent.parent == Path(ingest_app.settings.data_dir).resolve()
    ingestion.delete_source(gone.id)
    results = ingestion.search("ns", "moon drifting away")
    assert [r["source_id"] for r in results] == [keep.id]
    assert not blob.exists()
    with pytest.raises(SourceNotFoundError):
        ingestion.get_source(gone.id)
    with pytest.raises(SourceNotFoundError):
        ingestion.delete_source(gone.id)


def test_delete_cancels_pending_jobs(ingestion: Ingestion, ingest_app: Conveyor) -> None:
    source, job = ingestion.add_text("ns", "Never processed.")
    ingestion.delete_source(source.id)
    assert ingest_app.require_job(job.id).status is JobStatus.CANCELLED
    drain(ingest_app)
    assert ingestion.store.get_source(source.id) is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("evil.pdf", os.urandom(3000), "not a readable PDF"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("wide.csv", b"a,b\nx," + b"y" * (1024 * 1024 + 10) + b"\n", "field larger than field limit"),
        ("blank.txt", b"   \n\n  ", "no text found"),
    ],
)
def test_bad_files_fail_their_job_cleanly(ingestion: Ingestion, ingest_app: Conveyor, name: str, content: bytes,
                                          message: str) -> None:
    good, _ = ingestion.add_text("ns", "Healthy sources are not harmed by a bad neighbour.")
    source, job = ingestion.add_file("ns", name, content)
    drain(ingest_app)
    failed = ingestion.get_source(source.id)
    assert failed.status == "failed" and message in (failed.error or "")
    done = ingest_app.require_job(job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1 and message in (done.error or "")
    assert ingestion.get_source(good.id).status == "ready"
    assert ingestion.search("ns", "healthy sources bad neighbour")[0]["source_id"] == good.id


def test_docx_zip_bomb_fails_its_job(ingestion: Ingestion, ingest_app: Conveyor, tmp_path: Path) -> None:
    import zipfile

    path = make_docx(tmp_path / "bomb.docx", ["harmless"])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("word/media/bomb.bin", "w", force_zip64=True) as member:
        for _ in range(110):
            member.write(b"\0" * (1024 * 1024))
    source, job = ingestion.add_file("ns", "bomb.docx", path.read_bytes())
    drain(ingest_app)
    assert "zip bomb" in (ingestion.get_source(source.id).error or "")
    assert ingest_app.require_job(job.id).status is JobStatus.FAILED


def test_refused_inputs_at_creation(ingestion: Ingestion, ingest_app: Conveyor) -> None:
    with pytest.raises(InvalidArgumentsError, match=r"empty \(0 bytes\)"):
        ingestion.add_file("ns", "empty.pdf", b"")
    with pytest.raises(InvalidArgumentsError, match=r"unsupported file type '\.exe'"):
        ingestion.add_file("ns", "setup.exe", b"MZ")
    with pytest.raises(FileTooLargeError, match="larger than 2 MB"):
        ingestion.add_file("ns", "big.txt", b"x" * (2 * 1024 * 1024 + 1))
    for url in ("file:///etc/passwd", "javascript:alert(1)"):
        with pytest.raises(InvalidArgumentsError, match="only http and https"):
            ingestion.add_website("ns", url)
    with pytest.raises(InvalidArgumentsError, match="max_pages"):
        ingestion.add_website("ns", "https://example.org/", max_pages=0)
    with pytest.raises(InvalidArgumentsError, match="namespace"):
        ingestion.add_text("", "text")
    with pytest.raises(InvalidArgumentsError, match="text"):
        ingestion.add_text("ns", "  ")
    assert ingestion.list_sources() == []
    assert ingest_app.list_jobs().jobs == []
    uploads = Path(ingest_app.settings.data_dir) / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_loopback_site_refused_when_private_addresses_are_not_allowed(db_url: str, tmp_path: Path,
                                                                       site: Site) -> None:
    from conveyor.settings import Settings

    app = Conveyor(db_url, settings=Settings(data_dir=str(tmp_path), poll_interval_s=0.1))
    try:
        with pytest.raises(InvalidArgumentsError, match="CONVEYOR_CRAWL_ALLOW_PRIVATE"):
            Ingestion(app).add_website("ns", site.base + "/")
        assert Ingestion(app).list_sources() == []
    finally:
        app.close()


def test_mixing_embedding_models_in_a_namespace_is_refused(ingestion: Ingestion, ingest_app: Conveyor) -> None:
    import numpy as np

    from conveyor.ingest.chunk import make_chunks

    source, _ = ingestion.add_text("ns", "Some text about kettles.")
    drain(ingest_app)
    store = open_store(ingest_app.database_url)
    chunks = make_chunks("other model")
    with pytest.raises(ModelMismatchError, match="refusing to mix"):
        store.replace_chunks(source.id, NewChunks(chunks, np.ones((1, 8), dtype=np.float32), "another-model"))
    with pytest.raises(ModelMismatchError):
        store.search("ns", np.ones(8, dtype=np.float32), 3, "another-model")
    ingestion.delete_source(source.id)  # an emptied namespace takes any model again
    other, _ = ingestion.add_text("ns", "x")
    vectors = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    assert store.replace_chunks(other.id, NewChunks(chunks, vectors, "another-model")) == 1


def test_source_jobs_and_reconciled_failure(ingestion: Ingestion, ingest_app: Conveyor) -> None:
    source, job = ingestion.add_text("ns", "Cancelled before it ran.")
    assert [j.id for j in ingestion.source_jobs(source.id)] == [job.id]
    ingest_app.cancel(job.id)
    reconciled = ingestion.get_source(source.id)
    assert reconciled.status == "failed" and "cancel" in (reconciled.error or "")


def test_a_crawl_that_cannot_start_fails_its_source(ingestion: Ingestion, ingest_app: Conveyor, site: Site) -> None:
    site.robots_status = 500
    source, job = ingestion.add_website("ns", site.base + "/")
    drain(ingest_app, max_jobs=1)  # the first attempt; crawls keep their retries for network trouble
    waiting = ingestion.get_source(source.id)
    assert waiting.status == "pending" and "robots.txt" in (waiting.error or "") and "answered 500" in waiting.error
    attempt = ingest_app.require_job(job.id)
    assert attempt.status is JobStatus.SCHEDULED and "not crawling" in (attempt.error or "")
    ingest_app.cancel(job.id)  # no more attempts: failed is final
    failed = ingestion.get_source(source.id)
    assert failed.status == "failed" and "answered 500" in (failed.error or "")
    assert site.pages_fetched() == []


def test_delete_cancels_a_running_crawl(ingestion: Ingestion, ingest_app: Conveyor, site: Site) -> None:
    import threading

    from tests.ingest.conftest import wait_until

    site.hold_path = "/about.html"  # the second page: the crawl is running, one page stored
    source, job = ingestion.add_website("ns", site.base + "/", max_pages=5)
    # two slots: the crawl, and the step of its first page, which stores that page's chunks meanwhile
    worker = threading.Thread(target=lambda: ingest_app.run_worker(concurrency=2, burst=True, handle_signals=False))
    worker.start()
    try:
        assert site.held.wait(30)
        wait_until(lambda: ingestion.store.get_source(source.id).chunk_count == 1,  # type: ignore[union-attr]
                   what="the first page stored")
        assert ingest_app.require_job(job.id).status is JobStatus.PROCESSING
        ingestion.delete_source(source.id)
        assert ingestion.store.get_source(source.id) is None
    finally:
        site.release.set()
        worker.join(60)
    assert not worker.is_alive()
    assert ingest_app.require_job(job.id).status is JobStatus.CANCELLED
    assert ingestion.search("ns", "lighthouse keepers polish the great lens") == []
    assert ingestion.store.load_checkpoint(source.id) is None
    assert len(site.pages_fetched()) <= 2, "the crawl stopped after the page in flight"


def test_a_namespace_of_another_model_refuses_new_sources_at_once(
    ingestion: Ingestion, ingest_app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestion.add_text("ns", "Stored with the default embedder.")
    drain(ingest_app)
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "openai")
    monkeypatch.setenv("CONVEYOR_EMBED_MODEL", "text-embedding-3-large")
    with pytest.raises(ModelMismatchError, match=r"holds vectors of model 'conveyor-hash-384-v1'"):
        ingestion.add_text("ns", "Another model.")
    assert len(ingestion.list_sources("ns")) == 1
    source, _ = ingestion.add_text("other-ns", "A fresh namespace takes any model.")
    assert source.status == "pending"


def test_ingesting_the_same_file_again_replaces_its_chunks(ingestion: Ingestion, ingest_app: Conveyor,
                                                           tmp_path: Path, site: Site) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("Hedgehogs hibernate under leaves.\n\n" + FILLER)
    first, _ = ingestion.add_file("kb", "notes.md", notes.read_bytes())
    drain(ingest_app)
    old_blob = ingestion.store.get_source(first.id).location  # type: ignore[union-attr]
    notes.write_text("Dormice sleep for seven months.\n\n" + FILLER)
    again, job = ingestion.add_file("kb", "notes.md", notes.read_bytes())
    assert again.id == first.id and again.status == "pending" and again.job_id == job.id
    assert not Path(old_blob or "").exists()  # the old upload went with it
    drain(ingest_app)
    assert [s.id for s in ingestion.list_sources("kb")] == [first.id]
    assert ingestion.get_source(first.id).chunk_count == len(ingestion.store.source_chunks(first.id))
    for mode in ("hybrid", "vector", "keyword"):
        hits = ingestion.search("kb", "dormice sleep seven months", top_k=100, mode=mode)
        texts = [h["text"] for h in hits]
        assert len(texts) == len(set(texts)), mode  # no duplicates
        assert not any("Hedgehogs" in t for t in texts), mode
    assert "Dormice" in ingestion.search("kb", "dormice sleep seven months", top_k=1)[0]["text"]
    # a website added again is crawled again in place of the old crawl
    web, _ = ingestion.add_website("kb", site.base + "/", max_pages=2)
    drain(ingest_app)
    chunks = ingestion.get_source(web.id).chunk_count
    again_web, _ = ingestion.add_website("kb", site.base + "/", max_pages=2)
    drain(ingest_app)
    assert again_web.id == web.id and ingestion.get_source(web.id).chunk_count == chunks == 2
    # a text without a name is a new source each time; with a name it replaces the text of that name
    ingestion.add_text("kb", "Unnamed text one.")
    ingestion.add_text("kb", "Unnamed text one.")
    named, _ = ingestion.add_text("kb", "Version one.", name="policy")
    named_again, _ = ingestion.add_text("kb", "Version two.", name="policy")
    assert named_again.id == named.id
    drain(ingest_app)
    assert sorted(s.name for s in ingestion.list_sources("kb")) == sorted(
        [site.base + "/", "Unnamed text one.", "Unnamed text one.", "notes.md", "policy"])
    assert ingestion.store.source_chunks(named.id)[0]["text"] == "Version two."
