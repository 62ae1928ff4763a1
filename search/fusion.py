"""Combined queries ("this shape, but red"): one ranking from several query vectors in several spaces.

Each part (a sketch or photo vector in the ``image`` space, a text vector in
the ``text`` space) proposes its own top candidates; every candidate is then
scored by every part with exact cosine similarity, each part's scores are
standardised over the candidates (cosines of different spaces have different
scales), and the weighted sum ranks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.index import VectorStore


def fuse_scores(store: VectorStore, parts: Sequence[tuple[np.ndarray, str, float]], k: int, *,
                allowed: np.ndarray | None = None, pool: int = 200) -> list[tuple[int, float]]:
    """Top-k (annoy id, fused score) for ``parts`` = [(vector, space, weight), ...]."""
    candidates: set[int] = set()
    for vector, space, _weight in parts:
        candidates.update(i for i, _ in store.query(vector, max(pool, 4 * k), space=space, allowed=allowed))
    if not candidates:
        return []
    ids = np.fromiter(candidates, dtype=np.int64)
    fused = np.zeros(len(ids), dtype=np.float64)
    for vector, space, weight in parts:
        sims = np.asarray(store.vectors(space)[ids]) @ np.asarray(vector, dtype=np.float32)
        fused += weight * (sims - sims.mean()) / (sims.std() + 1e-6)
    order = np.argsort(-fused)[:k]
    return [(int(ids[j]), float(fused[j])) for j in order]
