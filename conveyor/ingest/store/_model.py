"""The values the store takes and gives: sources, new chunks, search filters."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.job import iso, to_datetime

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from conveyor.ingest.chunk import Chunk

    Vectors = npt.NDArray[np.float32]

SOURCE_KINDS = ("text", "file", "website")
SOURCE_STATUSES = ("pending", "processing", "ready", "failed")
SEARCH_MODES = ("hybrid", "vector", "keyword")

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    namespace: str
    name: str
    kind: str
    status: str
    chunk_count: int
    error: str | None
    location: str | None
    options: dict[str, Any]
    job_id: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The source as the API shows it (SPEC section 5)."""
        out: dict[str, Any] = {
            "id": self.id,
            "namespace": self.namespace,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "chunk_count": self.chunk_count,
            "error": self.error,
            "job_id": self.job_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
        if self.kind == "website":
            out["url"] = self.location
            out["max_pages"] = self.options.get("max_pages")
            out["include_subpages"] = self.options.get("include_subpages")
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Source:
        return cls(
            id=row["id"],
            namespace=row["namespace"],
            name=row["name"],
            kind=row["kind"],
            status=row["status"],
            chunk_count=int(row["chunk_count"]),
            error=row["error"],
            location=row["location"],
            options=json.loads(row["options"] or "{}"),
            job_id=row["job_id"],
            created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
            updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class NewChunks:
    """Chunks of one source with their vectors and per-chunk metadata (url, title, ...)."""

    chunks: Sequence[Chunk]
    vectors: Vectors
    model: str
    metadata: Sequence[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Only chunks of these sources, of sources of these kinds, whose metadata holds these key-value pairs."""

    source_ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    metadata: Mapping[str, str | int | float | bool] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.source_ids or self.kinds or self.metadata)

    def params(self) -> dict[str, Any]:
        """The filter as query parameters (JSON arrays and objects, NULL where not filtered)."""
        return {
            "source_ids": dumps(list(self.source_ids)) if self.source_ids else None,
            "kinds": dumps(list(self.kinds)) if self.kinds else None,
            "metadata": dumps(dict(self.metadata)) if self.metadata else None,
        }


NO_FILTER = SearchFilter()


def result_row(row: dict[str, Any], score: float, matched: list[str]) -> dict[str, Any]:
    """A search result: the chunk's own metadata as flat fields, then the chunk and its source."""
    extra = json.loads(row["metadata"])
    return {
        **extra,
        "score": round(score, 6),
        "matched": matched,
        "chunk_id": row["id"],
        "source_id": row["source_id"],
        "source_name": row["source_name"],
        "source_kind": row["source_kind"],
        "namespace": row["namespace"],
        "chunk_index": row["chunk_index"],
        "text": row["text"],
        "char_count": row["char_count"],
        "word_count": row["word_count"],
        "created_at": iso(to_datetime(row["created_at"])),
    }
