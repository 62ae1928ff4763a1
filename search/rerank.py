"""Category-consistent re-ranking of picture queries.

A photo or sketch query gets a distribution over articleTypes (``search.categories.picture_categories``: the
encoder's own cosine head, averaged for photos with the image-only classifier). Among the ``RERANK_CANDIDATES``
nearest items, each item's score becomes

    cosine + weight * P(the query shows the item's category)

so that, among near neighbours, items of the kind the query most likely shows come first; an item of
another kind still wins when it is clearly closer. ``weight`` 0.5 was chosen on the validation split
(docs/experiments.md); 0 turns re-ranking off. The setting ``RERANK_WEIGHT`` defaults to this module's.

For a photo the distribution first takes in the vote of its nearest candidates (``with_vote``: the same
similarity-weighted vote that tags an untitled upload, ``search.categories``); measured on the validation split,
it lifts photo queries and does not help sketches, whose neighbours are less often of their kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.categories import with_vote

__all__ = ["RERANK_CANDIDATES", "RERANK_WEIGHT", "depth", "rerank_scores", "with_vote"]

RERANK_WEIGHT = 0.5
RERANK_CANDIDATES = 50


def rerank_scores(scores: Sequence[float], categories: Sequence[str | None], probs: dict[str, float] | None,
                  weight: float = RERANK_WEIGHT) -> np.ndarray:
    """Cosines of candidates and their categories -> re-ranking scores (unchanged without ``probs``)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not probs or not weight:
        return scores
    return scores + weight * np.array([probs.get(c or "", 0.0) for c in categories], dtype=np.float64)


def depth(k: int, probs: dict[str, float] | None, weight: float = RERANK_WEIGHT) -> int:
    """How many nearest items to fetch for a top ``k`` that will be re-ranked."""
    return max(k, RERANK_CANDIDATES) if probs and weight else k
