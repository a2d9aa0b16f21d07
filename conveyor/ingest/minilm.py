"""all-MiniLM-L6-v2 on the CPU, offline (the `embed-minilm` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.ingest.errors import EmbeddingError


class MiniLMEmbedder:
    name = "all-MiniLM-L6-v2"

    @classmethod
    def shared(cls) -> MiniLMEmbedder:
        raise EmbeddingError("the MiniLM embedder is not available in this build")

    def embed(self, texts: Sequence[str]) -> Any:
        raise EmbeddingError("the MiniLM embedder is not available in this build")
