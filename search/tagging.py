"""Tag suggestions for an uploaded product: category, gender and colour with confidences,
and the CAM heatmap of the suggested category. (The web app adds a draft title: ``webapp.uploads.caption_draft``.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from search.engine import ModelSet, timed

HEADS = ("category", "gender", "colour", "sub_category")
# Without a title, the nearest catalog items vote on the category too: each of the NEIGHBOURS nearest (plain
# cosine, no re-ranking) votes with weight exp((cosine - best cosine) / NEIGHBOUR_TEMPERATURE), so near-copies
# outvote the merely similar; the vote (summing to 1) is added to the model's guess with NEIGHBOUR_WEIGHT.
# Chosen on the validation split (``manage.py evaluate`` prints the sweep; README).
NEIGHBOURS = 10
NEIGHBOUR_TEMPERATURE = 0.02
NEIGHBOUR_WEIGHT = 2.0


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


@dataclass
class Suggestion:
    model: str  # "fused" or "image-only"
    tags: dict[str, list[tuple[str, float]]]  # head -> [(label, probability)] best first
    heatmap: np.ndarray | None = None  # uint8 (80, 60, 3): CAM of the top category over the photo
    title_draft: str = ""  # for a photo without a title: a draft from what it shows (``webapp.uploads.caption_draft``)
    title_draft_method: str = ""  # "tags" or "lstm"
    timings_ms: dict[str, float] = field(default_factory=dict)

    def best(self, head: str) -> str:
        options = self.tags.get(head) or []
        return options[0][0] if options else ""


def suggest_tags(models: ModelSet, image: np.ndarray, title: str = "", top: int = 3,
                 neighbours: Sequence[tuple[str, float]] | None = None, vector: np.ndarray | None = None) -> Suggestion:
    """The fused classifier reads photo and title; without a title the image-only twin answers, its category
    averaged with Image2Vec's own head (``ModelSet.category_probs``, the search's guess for a photo) and, given
    ``neighbours`` ((category, cosine) of the photo's nearest catalog items), blended with their vote
    (``blend_guess``). ``vector``: the photo's Image2Vec vector when the caller has it. Test accuracies of each
    step are in the README."""
    from models.classifier import MAIN_HEAD, cam_overlay, class_activation_map, predict

    timings: dict[str, float] = {}
    title = (title or "").strip()
    role = "classifier" if title else "classifier_image"
    if not models.available(role):
        role = "classifier" if models.available("classifier") else "classifier_image"
    classifier = models.get(role)
    image_only = role == "classifier_image"
    with timed(timings, "classifier"):  # the twin mirror-averaged, as the search's guess for a photo reads it
        probs = predict(classifier, image[None], [title] if title else None, flip_average=image_only)
    names = classifier.config.label_names
    tags = {}
    for head, p in probs.items():
        order = np.argsort(-p[0])[:top]
        tags[head] = [(names[head][i], float(p[0][i])) for i in order]
    if image_only and models.available("encoder"):
        with timed(timings, "encoder"):
            vector = models.embed_images(image[None])[0] if vector is None else vector
            guess = models.category_probs(vector[None], classifier_probs=probs[MAIN_HEAD])[0]
        if neighbours:
            guess = blend_guess(guess, neighbour_vote(neighbours))
        tags["category"] = sorted(guess.items(), key=lambda kv: -kv[1])[:top]
    with timed(timings, "cam"):
        labels, top_label = list(names["category"]), tags["category"][0][0]
        best = labels.index(top_label) if top_label in labels else int(np.argmax(probs["category"][0]))
        cam = class_activation_map(classifier, image[None], "category", best)[0]
        heatmap = cam_overlay(image, cam)
    return Suggestion("image-only" if image_only else "fused", tags, heatmap, timings_ms=timings)
