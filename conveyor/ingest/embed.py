"""Embedders: texts in, L2-normalised float32 vectors out, and which one a namespace uses.

`CONVEYOR_EMBEDDER` chooses the model of new namespaces: `auto` (the default) is `minilm` when the `embed` extra is
installed (all-MiniLM-L6-v2 on ONNX Runtime, see `conveyor.ingest.minilm_onnx`) and `hash` otherwise; `hash` is
feature hashing with NumPy alone (offline, deterministic, it matches words rather than meanings); `openai` calls any
OpenAI-compatible `/embeddings` endpoint (`CONVEYOR_EMBED_BASE_URL`, `CONVEYOR_EMBED_API_KEY`,
`CONVEYOR_EMBED_MODEL`, `CONVEYOR_EMBED_BATCH`). A namespace keeps the model its first vectors were made with:
searching it, or adding to it, uses that model again.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from conveyor.ingest import minilm_onnx
from conveyor.ingest.errors import EmbeddingError
from conveyor.ingest.openai_embed import DEFAULT_BATCH, DEFAULT_MODEL, OpenAIEmbedder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]

HASH_DIMENSIONS = 384
CHOICES = ("auto", "minilm", "hash", "openai")
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
    """A token's bin: the hash picks the dimension (bin // 2), one more bit the sign (bin % 2), so that collisions
    tend to cancel out instead of adding up."""
    h = zlib.crc32(token.encode("utf-8"))
    return ((h >> 1) % HASH_DIMENSIONS) * 2 + (h & 1)


class HashingEmbedder:
    """Feature-hashed unigrams and bigrams of lower-cased words, weighted 1 + log(count), L2-normalised."""

    name = f"conveyor-hash-{HASH_DIMENSIONS}-v1"
    dimensions = HASH_DIMENSIONS

    def embed(self, texts: Sequence[str]) -> Vectors:
        import numpy as np

        bins = 2 * HASH_DIMENSIONS
        flat: list[int] = []
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            offset = row * bins
            flat.extend(offset + _feature(w) for w in words)
            flat.extend(offset + _feature(f"{a} {b}") for a, b in itertools.pairwise(words))
        counts = np.bincount(np.asarray(flat, dtype=np.int64), minlength=len(texts) * bins).astype(np.float32)
        counts = counts.reshape(len(texts), bins)
        # Sub-linear term weights: a word repeated ten times must not drown every other word.
        weighted = np.where(counts > 0, 1.0 + np.log(np.maximum(counts, 1.0)), 0.0).astype(np.float32)
        return normalise(weighted[:, 1::2] - weighted[:, 0::2])


def _choice(env: Mapping[str, str]) -> str:
    choice = env.get("CONVEYOR_EMBEDDER", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise EmbeddingError(f"CONVEYOR_EMBEDDER={choice!r}: use {', '.join(CHOICES)}")
    return choice


def explicit_choice(env: Mapping[str, str] | None = None) -> bool:
    """Whether CONVEYOR_EMBEDDER names a model (then a namespace of another model refuses new sources)."""
    return _choice(os.environ if env is None else env) != "auto"


def embedder_name(env: Mapping[str, str] | None = None) -> str:
    """The model new namespaces get, without loading it."""
    env = os.environ if env is None else env
    choice = _choice(env)
    if choice == "openai":
        return f"openai:{env.get('CONVEYOR_EMBED_MODEL', DEFAULT_MODEL)}"
    if choice == "minilm" or (choice == "auto" and minilm_onnx.available(env)):
        return minilm_onnx.MODEL_NAME
    return HashingEmbedder.name


def require_model(model: str, env: Mapping[str, str] | None = None) -> None:
    """MissingExtraError, before anything is stored, when the model cannot run in this installation."""
    if model == minilm_onnx.MODEL_NAME:
        minilm_onnx.require(env)


def embedder_for(model: str, env: Mapping[str, str] | None = None) -> Embedder:
    """The embedder that makes vectors of `model` (a name stored with a namespace)."""
    env = os.environ if env is None else env
    if model == HashingEmbedder.name:
        return _hashing()
    if model == minilm_onnx.MODEL_NAME:
        return minilm_onnx.shared()
    if model.startswith("openai:"):
        base_url = env.get("CONVEYOR_EMBED_BASE_URL", "https://api.openai.com/v1")
        batch = env.get("CONVEYOR_EMBED_BATCH", str(DEFAULT_BATCH))
        if not batch.isdigit() or int(batch) < 1:
            raise EmbeddingError(f"CONVEYOR_EMBED_BATCH must be a positive integer, got {batch!r}")
        return OpenAIEmbedder(base_url, model.removeprefix("openai:"), env.get("CONVEYOR_EMBED_API_KEY"),
                              batch=int(batch))
    raise EmbeddingError(f"no embedder makes vectors of the model {model!r}")


def embedder_from_env(env: Mapping[str, str] | None = None) -> Embedder:
    """The embedder `CONVEYOR_EMBEDDER` chooses for new namespaces."""
    return embedder_for(embedder_name(env), env)


@functools.cache
def _hashing() -> HashingEmbedder:
    return HashingEmbedder()


@dataclass(frozen=True, slots=True)
class EmbedderStatus:
    """What `conveyor check` and the dashboard say about embeddings."""

    model: str
    semantic: bool
    message: str


def embedder_status(env: Mapping[str, str] | None = None) -> EmbedderStatus:
    env = os.environ if env is None else env
    try:
        model = embedder_name(env)
    except EmbeddingError as exc:
        return EmbedderStatus("", False, exc.message)
    if model == HashingEmbedder.name:
        missing = ", ".join(minilm_onnx.missing_parts(env))
        if missing:
            hint = f" (missing: {missing}); for semantic search install the `embed` extra: {minilm_onnx.INSTALL_HINT}"
        else:
            hint = f"; CONVEYOR_EMBEDDER=hash chooses it: unset it for {minilm_onnx.MODEL_NAME}"
        return EmbedderStatus(model, False, f"hashing fallback in use: matches words, not meanings{hint}")
    if model == minilm_onnx.MODEL_NAME:
        try:
            minilm_onnx.require(env)
            embedder = minilm_onnx.shared()  # loads and checks the files (once per process)
        except EmbeddingError as exc:  # a MissingExtraError too
            return EmbedderStatus(model, False, exc.message)
        return EmbedderStatus(model, True, f"{model} on ONNX Runtime ({embedder.files.model})")
    return EmbedderStatus(model, True, f"{model} at {env.get('CONVEYOR_EMBED_BASE_URL', 'https://api.openai.com/v1')}")
