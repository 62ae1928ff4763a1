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
from search.lexical import best_matches


def fuse_scores(store: VectorStore, parts: Sequence[tuple[np.ndarray, str, float]], k: int, *,
                allowed: np.ndarray | None = None, pool: int = 200,
                bonus: tuple[int, np.ndarray] | None = None) -> list[tuple[int, float]]:
    """Top-k (annoy id, fused score) for ``parts`` = [(vector, space, weight), ...].

    ``bonus`` = (part index, scores over every annoy id): added to that part's cosines before they are
    standardised, its best ids joining the candidates — how the words of a combined query bring their
    title match (``search.lexical``: already multiplied by ``LEXICAL_WEIGHT``)."""
    candidates: set[int] = set()
    for vector, space, _weight in parts:
        candidates.update(i for i, _ in store.query(vector, max(pool, 4 * k), space=space, allowed=allowed))
    if bonus is not None:
        extra, best = best_matches(bonus[1], max(pool, 4 * k), allowed)
        candidates.update(best.tolist())
    if not candidates:
        return []
    ids = np.fromiter(candidates, dtype=np.int64)
    fused = np.zeros(len(ids), dtype=np.float64)
    for p, (vector, space, weight) in enumerate(parts):
        sims = np.asarray(store.vectors(space)[ids]) @ np.asarray(vector, dtype=np.float32)
        if bonus is not None and bonus[0] == p:
            sims = sims + extra[ids]
        fused += weight * (sims - sims.mean()) / (sims.std() + 1e-6)
    order = np.argsort(-fused)[:k]
    return [(int(ids[j]), float(fused[j])) for j in order]
