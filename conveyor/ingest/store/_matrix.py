"""Exact cosine search with NumPy over a per-namespace matrix kept in memory.

The matrix is reloaded when the namespace's version (bumped by every write, from any process) changes; after writes
without deletions only the new rows are read (writers of one namespace are serialised by its row lock, so ids grow
in commit order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Loader = Callable[[str, dict[str, Any]], tuple[Any, Any]]  # (query name, params) -> (ids, vectors)


@dataclass
class Matrix:
    version: int
    deletions: int
    ids: Any  # int64 array, ascending
    vectors: Any  # float32 (n, d)


class MatrixCache:
    def __init__(self) -> None:
        self._matrices: dict[str, Matrix] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, version: int, deletions: int, load: Loader) -> Matrix:
        import numpy as np

        with self._lock:
            cached = self._matrices.get(namespace)
        if cached is not None and cached.version == version:
            return cached
        if cached is not None and cached.deletions == deletions and cached.ids.shape[0]:
            ids, vectors = load("namespace_vectors_after", {"namespace": namespace, "after": int(cached.ids[-1])})
            if ids.shape[0] and vectors.shape[1] == cached.vectors.shape[1]:
                ids = np.concatenate([cached.ids, ids])
                vectors = np.concatenate([cached.vectors, vectors])
            elif ids.shape[0]:
                ids, vectors = load("namespace_vectors", {"namespace": namespace})
            else:
                ids, vectors = cached.ids, cached.vectors
        else:
            ids, vectors = load("namespace_vectors", {"namespace": namespace})
        matrix = Matrix(version, deletions, ids, vectors)
        with self._lock:
            self._matrices[namespace] = matrix
        return matrix


def rank(matrix: Matrix, query: Any, top_k: int, allowed: Any | None = None) -> list[tuple[int, float]]:
    """The `top_k` (id, cosine) pairs, nearest first; `allowed`, an id array, restricts the candidates."""
    import numpy as np

    if matrix.vectors.shape[0] == 0:
        return []
    scores = matrix.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
    candidates = None
    if allowed is not None:
        candidates = np.flatnonzero(np.isin(matrix.ids, allowed))
        if candidates.shape[0] == 0:
            return []
        scores = scores[candidates]
    k = min(top_k, scores.shape[0])
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    rows = top if candidates is None else candidates[top]
    return [(int(matrix.ids[r]), float(s)) for r, s in zip(rows, scores[top], strict=True)]


def load_rows(rows: list[tuple[Any, ...]]) -> tuple[Any, Any]:
    """(ids, vectors) from rows of (id, float32 bytes)."""
    import numpy as np

    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.float32)
    vectors = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return ids, vectors
