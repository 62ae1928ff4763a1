"""Category-consistent re-ranking of picture queries.

A photo or sketch query gets a distribution over articleTypes (``ModelSet.category_probs``: the encoder's
own cosine head, averaged for photos with the image-only classifier). Among the ``RERANK_CANDIDATES``
nearest items, each item's score becomes

    cosine + weight * P(the query shows the item's category)

so that, among near neighbours, items of the kind the query most likely shows come first; an item of
another kind still wins when it is clearly closer. ``weight`` 0.5 was chosen on the validation split
(README, Measured quality); 0 turns re-ranking off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RERANK_WEIGHT = 0.5
RERANK_CANDIDATES = 50
TOP_CATEGORIES = 10  # a query carries its 10 likeliest categories; the rest count as probability 0


def top_categories(probs: np.ndarray, class_names: Sequence[str], n: int = TOP_CATEGORIES) -> list[dict[str, float]]:
    """(N, C) probabilities over ``class_names`` -> per row, the ``n`` likeliest {category: probability}."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1)[:, :n]
    return [{class_names[j]: round(float(row[j]), 6) for j in idx} for row, idx in zip(probs, order, strict=True)]


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
