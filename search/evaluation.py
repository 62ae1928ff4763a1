"""Retrieval metrics over an index: P@k by label, ANN recall against exact search; and the caption drafts'
BLEU-4 (``models.metrics.bleu4``, which the captioner's training reports too)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.metrics import bleu4, share_of_hits

__all__ = ["ann_recall", "bleu4", "guess_accuracy", "neighbour_categories", "precision_at_ks", "recall_of_items",
           "text_query_figures"]
from search import rerank
from search.index import VectorStore, recall_at_k


def precision_at_ks(store: VectorStore, query_vectors: np.ndarray, query_labels: Sequence[str],
                    gallery_labels: Sequence[str], *, ks: Sequence[int] = (5, 10), exclude: Sequence[int] | None = None,
                    space: str = "image", categories: Sequence[dict[str, float]] | None = None,
                    weight: float = rerank.RERANK_WEIGHT, vote: float = 0.0) -> dict[str, float]:
    """Mean P@k: the share of the top k hits (by the index) whose label equals the query's.

    ``exclude[i]`` is the annoy id of query i's own item, left out of its hits. With ``categories``
    (each query's likeliest categories), hits are re-ranked as the search does (``search.rerank``; ``vote``:
    as for a photo, the nearest hits' vote joins the categories first, with this weight).
    """
    max_k = max(ks)
    sums = {k: 0.0 for k in ks}
    for i, vec in enumerate(query_vectors):
        probs = categories[i] if categories is not None else None
        hits = store.query(vec, rerank.depth(max_k, probs, weight) + 1, space=space)
        hits = [(h, s) for h, s in hits if exclude is None or h != exclude[i]]
        if probs:
            if vote:
                probs = rerank.with_vote(probs, [s for _, s in hits], [gallery_labels[h] for h, _ in hits], vote)
            scores = rerank.rerank_scores([s for _, s in hits], [gallery_labels[h] for h, _ in hits], probs, weight)
            hits = [hits[j] for j in np.argsort(-scores, kind="stable")]
        ids = [h for h, _ in hits][:max_k]
        for k in ks:
            top = ids[:k]
            sums[k] += share_of_hits([gallery_labels[h] for h in top], query_labels[i], k)
    n = max(len(query_vectors), 1)
    return {f"p_at_{k}": sums[k] / n for k in ks}


def ann_recall(store: VectorStore, query_vectors: np.ndarray, k: int = 10, space: str = "image") -> float:
    return recall_at_k(store, query_vectors, k=k, space=space)


def recall_of_items(store: VectorStore, query_vectors: np.ndarray, targets: Sequence[int], *, k: int = 10,
                    space: str = "image") -> dict[str, float]:
    """R@k: the share of queries whose own item (annoy id ``targets[i]``) is among the top k."""
    found = sum(targets[i] in [h for h, _ in store.query(vec, k, space=space)] for i, vec in enumerate(query_vectors))
    return {f"r_at_{k}": found / max(len(query_vectors), 1)}


def text_query_figures(store: VectorStore, query_vectors: np.ndarray, texts: Sequence[str], titles,
                       targets: Sequence[int], query_labels: Sequence[str], gallery_labels: Sequence[str], *,
                       weights: Sequence[float], space: str = "text") -> dict[float, dict[str, float]]:
    """Text queries ranked as the search ranks them (``search.lexical.hybrid_rank``) for each weight of the
    title match (``titles``: the index's ``TitleIndex``; weight 0 or None: the joint space alone): R@10 of
    each query's own item (annoy id ``targets[i]``) and P@5 by label."""
    from search.lexical import hybrid_rank

    found = {w: 0 for w in weights}
    precise = {w: 0.0 for w in weights}
    for i, vec in enumerate(query_vectors):
        lexical = titles.scores(texts[i]) if titles is not None else None
        for w in weights:
            ids = [h for h, _ in hybrid_rank(store, vec, lexical, 10, weight=w, space=space)]
            found[w] += targets[i] in ids
            precise[w] += sum(gallery_labels[h] == query_labels[i] for h in ids[:5]) / 5
    n = max(len(query_vectors), 1)
    return {w: {"r_at_10": found[w] / n, "p_at_5": precise[w] / n} for w in weights}


def neighbour_categories(store: VectorStore, query_vectors: np.ndarray, gallery_labels: Sequence[str], k: int, *,
                         exclude: Sequence[int] | None = None,
                         space: str = "image") -> list[list[tuple[str, float]]]:
    """(label, cosine) of each query's ``k`` nearest items (``exclude[i]``: query i's own id)."""
    out = []
    for i, vec in enumerate(query_vectors):
        hits = [(h, s) for h, s in store.query(vec, k + 1, space=space) if exclude is None or h != exclude[i]]
        out.append([(gallery_labels[h], s) for h, s in hits[:k]])
    return out


def guess_accuracy(guesses: Sequence[dict[str, float]], truth: Sequence[str],
                   neighbours: Sequence[Sequence[tuple[str, float]]] | None = None, *, k: int = 10,
                   weight: float = 0.0, temperature: float = 0.02) -> float:
    """Accuracy of category guesses, each blended with the vote of its ``k`` nearest items' labels
    (``search.tagging.neighbour_vote`` and ``blend_guess``; weight 0: the guesses alone)."""
    from search.tagging import blend_guess, neighbour_vote

    right = 0
    for i, guess in enumerate(guesses):
        if neighbours is not None and weight:
            guess = blend_guess(guess, neighbour_vote(neighbours[i][:k], temperature), weight)
        right += bool(guess) and max(guess, key=guess.get) == truth[i]
    return right / max(len(guesses), 1)
