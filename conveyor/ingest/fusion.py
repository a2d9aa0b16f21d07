"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): each list a chunk appears in adds 1 / (k + rank).

It needs no calibration between the lists' own scores (cosine similarity and BM25 are on different scales), only
their order, and a chunk found by both lists rises above one found by either alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RRF_K = 60


@dataclass(slots=True)
class Fused:
    chunk_id: int
    score: float
    matched: list[str] = field(default_factory=list)


def fuse(lists: Mapping[str, Sequence[tuple[int, float]]], top_k: int, k: int = RRF_K) -> list[Fused]:
    """The `top_k` ids with the highest fused score; ties keep the order of the first list that has them."""
    fused: dict[int, Fused] = {}
    for name, ranked in lists.items():
        for rank, (chunk_id, _score) in enumerate(ranked, start=1):
            entry = fused.setdefault(chunk_id, Fused(chunk_id, 0.0))
            entry.score += 1.0 / (k + rank)
            entry.matched.append(name)
    return sorted(fused.values(), key=lambda f: -f.score)[:top_k]
