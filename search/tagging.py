"""Tag suggestions for an uploaded product: category, gender and colour with confidences,
and the CAM heatmap of the suggested category. (The web app adds a draft title: ``webapp.uploads.caption_draft``.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from search.categories import (  # the vote's settings: evaluate.py (the lead's) reads them from here
    NEIGHBOUR_TEMPERATURE,
    NEIGHBOUR_WEIGHT,
    NEIGHBOURS,
    blend_guess,
    neighbour_vote,
    picture_categories,
    vote_weight,
)
from search.timing import timed
from search.trained import TrainedModels

__all__ = ["HEADS", "NEIGHBOURS", "NEIGHBOUR_TEMPERATURE", "NEIGHBOUR_WEIGHT", "Suggestion", "blend_guess", "neighbour_vote", "suggest_tags",
           "vote_weight"]

HEADS = ("category", "gender", "colour", "sub_category")


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


def suggest_tags(models: TrainedModels, image: np.ndarray, title: str = "", top: int = 3,
                 neighbours: Sequence[tuple[str, float]] | None = None, vector: np.ndarray | None = None) -> Suggestion:
    """The fused classifier reads photo and title; without a title the image-only twin answers, its category
    averaged with Image2Vec's own head as the twin's training chose (``search.categories.picture_categories``,
    the search's guess for a photo) and, given ``neighbours`` ((category, cosine) of the photo's nearest catalog
    items), blended with their vote at the twin's chosen weight (``blend_guess``, ``vote_weight``). ``vector``: the photo's Image2Vec vector when the caller has it. Test
    accuracies of each step are in docs/experiments.md."""
    from models.classifier import MAIN_HEAD

    timings: dict[str, float] = {}
    title = (title or "").strip()
    image_only = not title
    if not models.available("classifier_image" if image_only else "classifier"):
        image_only = not models.available("classifier")
    classifier = models.classifier(image_only=image_only)
    with timed(timings, "classifier"):  # the twin mirror-averaged, as the search's guess for a photo reads it
        probs = classifier.predict(image[None], [title] if title else None, flip_average=image_only)
    names = classifier.label_names
    tags = {}
    for head, p in probs.items():
        order = np.argsort(-p[0])[:top]
        tags[head] = [(names[head][i], float(p[0][i])) for i in order]
    if image_only and models.available("encoder"):
        with timed(timings, "encoder"):
            vector = models.encoder().embed(image[None])[0] if vector is None else vector
            guess = picture_categories(models, vector[None], classifier_probs=probs[MAIN_HEAD])[0]
        if neighbours:
            guess = blend_guess(guess, neighbour_vote(neighbours), vote_weight(models))
        tags["category"] = sorted(guess.items(), key=lambda kv: -kv[1])[:top]
    with timed(timings, "cam"):
        labels, top_label = list(names["category"]), tags["category"][0][0]
        best = labels.index(top_label) if top_label in labels else int(np.argmax(probs["category"][0]))
        heatmap = classifier.heatmap(image, "category", best)
    return Suggestion("image-only" if image_only else "fused", tags, heatmap, timings_ms=timings)
