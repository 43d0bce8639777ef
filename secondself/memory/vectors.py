"""Exact cosine search over a float32 matrix held in memory.

The interface (`VectorIndex.top_k(query, k, mask)`) is all that search uses, so an ANN index can replace
this class later without touching the rest. Vectors are L2-normalized at write time, so cosine is a dot
product: one BLAS matrix-vector product over n x d floats (100k x 384 = 150 MB, ~10 ms on 2 cores).
"""

from __future__ import annotations

import numpy as np

__all__ = ["VectorIndex"]


class VectorIndex:
    def __init__(self, ids: np.ndarray, matrix: np.ndarray, source_ids: np.ndarray, dates: np.ndarray,
                 model: str, generation: int) -> None:
        self.ids = ids
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.source_ids = source_ids
        self.dates = dates
        self.model = model
        self.generation = generation

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def top_k(self, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(chunk_id, cosine) best first, among rows where `mask` is True (all rows if None)."""
        if len(self) == 0 or k <= 0:
            return []
        scores = self.matrix @ np.asarray(query, dtype=np.float32)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
            k = min(k, int(mask.sum()))
            if k == 0:
                return []
        k = min(k, scores.shape[0])
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.argsort(-scores[part], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in order]

    def mask(self, source_ids: list[int] | None, since: float | None, until: float | None,
             allowed_ids: np.ndarray | None) -> np.ndarray | None:
        """A row mask for the filters (None when nothing is filtered). Unknown dates never pass a date
        filter, the same as SQL comparisons with NULL on the keyword side."""
        m = None

        def both(a: np.ndarray) -> np.ndarray:
            return a if m is None else (m & a)

        if source_ids:
            m = both(np.isin(self.source_ids, np.asarray(source_ids, dtype=np.int64)))
        if since is not None:
            m = both(self.dates >= since)
        if until is not None:
            m = both(self.dates <= until)
        if allowed_ids is not None:
            m = both(np.isin(self.ids, allowed_ids))
        return m
