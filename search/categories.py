"""What kind of item a picture query shows: the likeliest articleTypes, with probabilities.

Two sources, both measured on the validation split (``manage.py evaluate``; docs/experiments.md):

* the models' guess (``picture_categories``): the encoder's own cosine head, averaged for photos with the
  image-only classifier's mirror-averaged prediction when that model knows the same classes, with the weight
  the classifier's training chose on the validation split (``models.train_classifier.encoder_head_weight``;
  an even average for a checkpoint from before that choice);
* the vote of the nearest catalog items (``neighbour_vote``): each of the ``NEIGHBOURS`` nearest (plain cosine,
  no re-ranking) votes with weight exp((cosine - best cosine) / ``NEIGHBOUR_TEMPERATURE``), so near-copies
  outvote the merely similar; the vote (summing to 1) joins the guess with the weight the twin's training chose
  on the validation split (``blend_guess``; ``vote_weight``, ``choose_vote_weight``; ``NEIGHBOUR_WEIGHT`` for a
  checkpoint from before that choice). It can lift photo queries and untitled uploads, never sketches.

``search.rerank`` re-ranks a query's hits with the result; ``search.tagging`` suggests an upload's category.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from search.trained import TrainedModels

TOP_CATEGORIES = 10  # a query carries its 10 likeliest categories; the rest count as probability 0
NEIGHBOURS = 10
NEIGHBOUR_TEMPERATURE = 0.02
NEIGHBOUR_WEIGHT = 2.0  # the vote's weight for a twin that did not choose one (``vote_weight``)
VOTE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)  # the weights the twin's training tries (``choose_vote_weight``)
EVEN = 0.5  # the encoder head's weight in a photo's guess when the twin's checkpoint names none


def top_categories(probs: np.ndarray, class_names: Sequence[str], n: int = TOP_CATEGORIES) -> list[dict[str, float]]:
    """(N, C) probabilities over ``class_names`` -> per row, the ``n`` likeliest {category: probability}."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1)[:, :n]
    return [{class_names[j]: round(float(row[j]), 6) for j in idx} for row, idx in zip(probs, order, strict=True)]


def picture_categories(models: TrainedModels, vectors: np.ndarray, images: np.ndarray | None = None,
                       classifier_probs: np.ndarray | None = None,
                       descriptors: np.ndarray | None = None, drawn: bool = False) -> list[dict[str, float]]:
    """The likeliest articleTypes of picture queries from their Image2Vec vectors (N, D).

    Photos (``images``, uint8 (N, 80, 60, 3)) also take the image-only classifier's prediction, averaged in
    with its checkpoint's ``encoder_head_weight`` when that model is trained on the same classes
    (``classifier_probs``: that prediction, (N, C), when the caller has already made it; ``descriptors``: the
    encoder's frozen descriptors of the photos, (2, N, D'), which that classifier reads instead of running the
    CNN again). A sketch passes none: the classifier
    never saw sketches; it passes ``drawn``, for the encoder's guess corrected for the kinds it saw drawn."""
    encoder = models.encoder()
    names = encoder.class_names
    probs = encoder.category_probs(vectors, drawn=drawn)
    photos = images is not None or classifier_probs is not None or descriptors is not None
    if photos and models.available("classifier_image"):
        from models.classifier import MAIN_HEAD

        twin = models.classifier(image_only=True)
        if list(twin.label_names[MAIN_HEAD]) == names:
            if classifier_probs is None:
                if descriptors is not None and reads_encoder(models):
                    classifier_probs = twin.predict(None, descriptors=descriptors)[MAIN_HEAD]
                else:
                    classifier_probs = twin.predict(images, flip_average=True)[MAIN_HEAD]
            weight = twin.payload.get("train", {}).get("encoder_head_weight", EVEN)
            probs = weight * probs + (1.0 - weight) * classifier_probs
    return top_categories(probs, names)


def vote_weight(models: TrainedModels) -> float:
    """The weight of the nearest items' vote in a photo's guess: what the image-only twin's training chose on the
    validation split (``choose_vote_weight``), else ``NEIGHBOUR_WEIGHT``."""
    if not models.available("classifier_image"):
        return NEIGHBOUR_WEIGHT
    return float(models.classifier(image_only=True).payload.get("train", {}).get("neighbour_weight", NEIGHBOUR_WEIGHT))


def choose_vote_weight(guesses: Sequence[dict[str, float]], labels: Sequence[str],
                       neighbours: Sequence[Sequence[tuple[str, float]]]) -> dict:
    """The vote's weight among ``VOTE_WEIGHTS`` that gives validation photos the most right categories (the smallest
    of equals): ``guesses``, their models' guesses; ``neighbours``, (category, cosine) of their nearest catalog
    items, nearest first. The better the guess, the less the vote adds, and past some point it only costs
    (docs/experiments.md)."""
    votes = [neighbour_vote(n[:NEIGHBOURS]) for n in neighbours]
    sweep = {}
    for weight in VOTE_WEIGHTS:
        right = [bool(g) and max((b := blend_guess(g, v, weight)), key=b.get) == label
                 for g, v, label in zip(guesses, votes, labels, strict=True)]
        sweep[str(weight)] = float(np.mean(right)) if right else 0.0
    best = max(VOTE_WEIGHTS, key=lambda w: (sweep[str(w)], -w))
    return {"neighbour_weight": best, "neighbour_sweep": sweep}


def reads_encoder(models: TrainedModels) -> bool:
    """Whether the image-only classifier reads the served encoder's frozen CNN (so the encoder's one pass
    over a photo gives it its input)."""
    return (models.available("classifier_image")
            and models.classifier(image_only=True).net.config.frozen_encoder == models.encoder().version)


def neighbour_vote(neighbours: Sequence[tuple[str, float]],
                   temperature: float = NEIGHBOUR_TEMPERATURE) -> dict[str, float]:
    """(category, cosine) of the nearest catalog items -> each category's share of their similarity-weighted
    votes (``temperature`` 0: one vote each)."""
    neighbours = [(c, float(s)) for c, s in neighbours if c]
    if not neighbours:
        return {}
    best = max(s for _, s in neighbours)
    votes: Counter = Counter()
    for category, score in neighbours:
        votes[category] += float(np.exp((score - best) / temperature)) if temperature else 1.0
    total = sum(votes.values())
    return {c: v / total for c, v in votes.items()}


def blend_guess(guess: dict[str, float], vote: dict[str, float], weight: float = NEIGHBOUR_WEIGHT) -> dict[str, float]:
    """A model's category probabilities plus ``weight`` x the neighbours' vote, renormalised to sum to 1."""
    if not vote or not weight:
        return dict(guess)
    mixed = {c: guess.get(c, 0.0) + weight * vote.get(c, 0.0) for c in set(guess) | set(vote)}
    total = sum(mixed.values()) or 1.0
    return {c: p / total for c, p in mixed.items()}


def with_vote(probs: dict[str, float] | None, scores: Sequence[float], categories: Sequence[str | None],
              weight: float = NEIGHBOUR_WEIGHT) -> dict[str, float] | None:
    """A photo query's category distribution blended with the vote of its nearest candidates (``scores``:
    cosines, ``categories``: their categories, in any order; the ``NEIGHBOURS`` nearest vote)."""
    if not probs:
        return probs
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:NEIGHBOURS]
    return blend_guess(probs, neighbour_vote([(categories[i] or "", float(scores[i])) for i in order]), weight)
