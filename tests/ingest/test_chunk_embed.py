"""The splitter, the default embedder, and the OpenAI-compatible client against a real local HTTP server."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest

from conveyor.ingest.chunk import make_chunks, split_text
from conveyor.ingest.embed import HashingEmbedder, OpenAIEmbedder, embedder_from_env
from conveyor.ingest.errors import EmbeddingError


def test_short_text_is_one_chunk() -> None:
    assert split_text("Hello there.") == ["Hello there."]
    assert split_text("   \n\n  ") == []


def test_chunks_respect_size_and_cover_the_text() -> None:
    paragraphs = [" ".join(f"p{p}s{s} is sentence number {s} of paragraph {p}." for s in range(12)) for p in range(8)]
    text = "\n\n".join(paragraphs)
    chunks = split_text(text, size=300, overlap=60)
    assert len(chunks) > 8
    assert all(len(c) <= 300 for c in chunks)
    for p in range(8):  # every sentence lands in some chunk
        for s in range(12):
            assert any(f"p{p}s{s} is sentence" in c for c in chunks)


def test_neighbours_overlap() -> None:
    text = " ".join(f"Sentence {i} is here." for i in range(60))
    chunks = split_text(text, size=200, overlap=50)
    shared = [set(a.split(". ")) & set(b.split(". ")) for a, b in itertools.pairwise(chunks)]
    assert all(shared), "each chunk shares at least one sentence with the next"


def test_one_giant_word_is_cut_by_characters() -> None:
    chunks = split_text("x" * 2500, size=1000, overlap=0)
    assert [len(c) for c in chunks] == [1000, 1000, 500]


def test_chunk_metadata() -> None:
    chunks = make_chunks("Alpha beta gamma.\n\nDelta epsilon.", size=20, overlap=0, first_index=5)
    assert [(c.index, c.text, c.word_count, c.char_count) for c in chunks] == [
        (5, "Alpha beta gamma.", 3, 17),
        (6, "Delta epsilon.", 2, 14),
    ]


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"overlap"):
        split_text("abc", size=10, overlap=10)


def test_hashing_embedder_is_deterministic_normalised_and_meaningful() -> None:
    embedder = HashingEmbedder()
    texts = ["The cat sat on the mat.", "A cat sat on a mat!", "Quarterly revenue grew by nine percent.", ""]
    a = embedder.embed(texts)
    b = HashingEmbedder().embed(texts)
    assert a.shape == (4, 384) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a[:3], axis=1), 1.0, atol=1e-5)
    assert not a[3].any()
    assert a[0] @ a[1] > 0.5 > a[0] @ a[2]


def test_embedder_choice_from_env() -> None:
    assert embedder_from_env({"CONVEYOR_EMBEDDER": "hash"}).name == HashingEmbedder.name
    openai = embedder_from_env({"CONVEYOR_EMBEDDER": "openai", "CONVEYOR_EMBED_BASE_URL": "http://127.0.0.1:9/v1",
                                "CONVEYOR_EMBED_MODEL": "tiny"})
    assert openai.name == "openai:tiny"
    with pytest.raises(EmbeddingError, match=r"use auto, minilm, hash, openai"):
        embedder_from_env({"CONVEYOR_EMBEDDER": "word2vec"})
    with pytest.raises(EmbeddingError, match=r"CONVEYOR_EMBED_BATCH must be a positive integer"):
        embedder_from_env({"CONVEYOR_EMBEDDER": "openai", "CONVEYOR_EMBED_BATCH": "0"})


class FakeEmbeddings(http.server.BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible embeddings server: the vector of a text is its letter counts a-z."""

    calls: ClassVar[list[dict[str, object]]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        flaky = body["model"] == "flaky" and len(type(self).calls) <= 2
        headers = {"Retry-After": "0"} if flaky else {}
        if body["model"] == "broken":
            payload, status = b'{"error": {"message": "model overloaded"}}', 503
        elif flaky:
            payload, status = b'{"error": {"message": "rate limited"}}', 429
        elif self.headers.get("Authorization") == "Bearer wrong":
            payload, status = b'{"error": {"message": "Incorrect API key provided"}}', 401
        elif body["model"] == "no-such-model":
            payload, status = b'{"error": {"message": "The model does not exist"}}', 404
        else:
            data = [
                {"index": i, "embedding": [float(text.lower().count(chr(97 + k))) + 0.01 for k in range(26)]}
                for i, text in enumerate(body["input"])
            ]
            payload, status = json.dumps({"data": list(reversed(data)), "model": body["model"]}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    FakeEmbeddings.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_client_against_a_local_server(embeddings_server: str) -> None:
    embedder = OpenAIEmbedder(embeddings_server + "/", "tiny", api_key="sk-test")
    texts = [f"text number {i} " + "z" * i for i in range(70)]  # two batches
    vectors = embedder.embed(texts)
    assert vectors.shape == (70, 26)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[69][25] > vectors[1][25]  # order kept although the server answered in reverse
    assert [len(c["body"]["input"]) for c in FakeEmbeddings.calls] == [64, 6]  # type: ignore[arg-type,index]
    assert FakeEmbeddings.calls[0]["path"] == "/v1/embeddings"
    assert FakeEmbeddings.calls[0]["auth"] == "Bearer sk-test"


def test_openai_client_retries_429_and_5xx_with_backoff(embeddings_server: str) -> None:
    waits: list[float] = []
    vectors = OpenAIEmbedder(embeddings_server, "flaky", sleep=waits.append).embed(["abc"])
    assert vectors.shape == (1, 26) and len(FakeEmbeddings.calls) == 3
    assert waits == [0.0, 0.0]  # the server's Retry-After: 0
    FakeEmbeddings.calls = []
    waits.clear()
    with pytest.raises(EmbeddingError, match=r"answered 503: .*model overloaded.*gave up after 4 attempts"):
        OpenAIEmbedder(embeddings_server, "broken", max_retries=3, backoff_s=0.1, sleep=waits.append).embed(["x"])
    assert len(FakeEmbeddings.calls) == 4 and len(waits) == 3
    assert 0.05 <= waits[0] <= 0.15 and 0.2 <= waits[2] <= 0.6  # exponential, with jitter


def test_openai_client_errors(embeddings_server: str) -> None:
    with pytest.raises(EmbeddingError, match=r"refused the API key \(401; check CONVEYOR_EMBED_API_KEY\)"):
        OpenAIEmbedder(embeddings_server, "tiny", api_key="wrong", sleep=pytest.fail).embed(["x"])
    with pytest.raises(EmbeddingError, match=r"does not know the model 'no-such-model' \(404"):
        OpenAIEmbedder(embeddings_server, "no-such-model", sleep=pytest.fail).embed(["x"])
    with pytest.raises(EmbeddingError, match=r"unreachable.*gave up after 2 attempts"):
        OpenAIEmbedder("http://127.0.0.1:9/v1", "tiny", timeout=2, max_retries=1, sleep=lambda _s: None).embed(["x"])
    with pytest.raises(EmbeddingError, match=r"http"):
        OpenAIEmbedder("ftp://x", "tiny")
