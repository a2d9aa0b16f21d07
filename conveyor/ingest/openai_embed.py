"""An OpenAI-compatible `/embeddings` client: OpenAI, Ollama (`http://localhost:11434/v1`), Hugging Face TEI
(`http://host:8080/v1`), vLLM, LiteLLM, ...

Texts go in batches of `batch` (`CONVEYOR_EMBED_BATCH`); a 429 or 5xx answer, or a connection that fails, is retried
with exponential backoff (honouring `Retry-After`) up to `max_retries` times; 401/403 (a wrong key) and 404 or a
400 that names the model (a wrong model) fail at once with a message that says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.ingest.errors import EmbeddingError

if TYPE_CHECKING:
    import httpx

    from conveyor.ingest.embed import Vectors

DEFAULT_MODEL = "text-embedding-3-small"
DEFAULT_BATCH = 64
TIMEOUT_S = 60.0
MAX_RETRIES = 5
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEmbedder:
    """Vectors from an OpenAI-compatible `/embeddings` endpoint, L2-normalised."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = TIMEOUT_S,
        batch: int = DEFAULT_BATCH,
        max_retries: int = MAX_RETRIES,
        backoff_s: float = BACKOFF_BASE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise EmbeddingError(f"CONVEYOR_EMBED_BASE_URL must be an http(s) URL, got {base_url!r}")
        if batch < 1 or max_retries < 0:
            raise EmbeddingError(f"the batch size must be positive and retries not negative ({batch}, {max_retries})")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.batch = batch
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.name = f"openai:{model}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        import httpx
        import numpy as np

        from conveyor.ingest.embed import normalise

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        rows: list[list[float]] = []
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            for start in range(0, len(texts), self.batch):
                rows.extend(self._batch(client, list(texts[start : start + self.batch])))
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except ValueError:
            raise EmbeddingError("the embeddings service returned vectors of different lengths") from None
        return normalise(matrix)

    def _batch(self, client: httpx.Client, batch: list[str]) -> list[list[float]]:
        for attempt in range(self.max_retries + 1):
            response, failure = self._post(client, batch)
            if response is not None and response.status_code == 200:
                return self._vectors(response, len(batch))
            if response is not None and response.status_code not in _RETRYABLE:
                raise EmbeddingError(self._refusal(response))
            if attempt == self.max_retries:
                break
            self.sleep(self._delay(attempt, response))
        raise EmbeddingError(f"{failure}; gave up after {self.max_retries + 1} attempts")

    def _post(self, client: httpx.Client, batch: list[str]) -> tuple[httpx.Response | None, str]:
        import httpx

        try:
            response = client.post(f"{self.base_url}/embeddings", json={"model": self.model, "input": batch})
        except httpx.HTTPError as exc:
            return None, f"embeddings service {self.base_url} unreachable: {type(exc).__name__}: {exc}"
        return response, f"embeddings service answered {response.status_code}: {response.text[:300]}"

    def _refusal(self, response: httpx.Response) -> str:
        detail = response.text[:300]
        status = response.status_code
        if status in (401, 403):
            return f"embeddings service refused the API key ({status}; check CONVEYOR_EMBED_API_KEY): {detail}"
        if status == 404 or (status == 400 and "model" in detail.lower()):
            return (
                f"embeddings service does not know the model {self.model!r} ({status}; check CONVEYOR_EMBED_MODEL): "
                f"{detail}"
            )
        return f"embeddings service answered {status}: {detail}"

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        header = response.headers.get("retry-after", "") if response is not None else ""
        try:
            if header:
                return min(max(float(header), 0.0), BACKOFF_MAX_S)
        except ValueError:
            pass
        return float(min(self.backoff_s * 2**attempt * (0.5 + random.random()), BACKOFF_MAX_S))

    def _vectors(self, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            data: Any = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [list(map(float, item["embedding"])) for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"unexpected embeddings response: {exc!r}") from None
        if len(vectors) != expected:
            raise EmbeddingError(f"asked for {expected} embeddings, got {len(vectors)}")
        return vectors
