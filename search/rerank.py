"""Category-consistent re-ranking of picture queries.

A photo or sketch query gets a distribution over articleTypes (``ModelSet.category_probs``: the encoder's
own cosine head, averaged for photos with the image-only classifier). Among the ``RERANK_CANDIDATES``
nearest items, each item's score becomes

    cosine + weight * P(the query shows the item's category)

so that, among near neighbours, items of the kind the query most likely shows come first; an item of
another kind still wins when it is clearly closer. ``weight`` 0.5 was chosen on the validation split
(README, Measured quality); 0 turns re-ranking off.

For a photo the distribution first takes in the vote of its nearest candidates (``with_vote``: the same
similarity-weighted vote that tags an untitled upload, ``search.tagging``); measured on the validation split,
it lifts photo queries and does not help sketches, whose neighbours are less often of their kind.
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


def with_vote(probs: dict[str, float] | None, scores: Sequence[float], categories: Sequence[str | None],
              ) -> dict[str, float] | None:
    """A photo query's category distribution blended with the vote of its nearest candidates (``scores``:
    cosines, ``categories``: their categories, in any order; ``search.tagging.NEIGHBOURS`` nearest vote)."""
    from search.tagging import NEIGHBOURS, blend_guess, neighbour_vote

    if not probs:
        return probs
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:NEIGHBOURS]
    return blend_guess(probs, neighbour_vote([(categories[i] or "", float(scores[i])) for i in order]))
