"""Tag suggestions for an uploaded product: category, gender and colour with confidences,
and the CAM heatmap of the suggested category. (Caption drafts need the catalog's titles for the
nearest-neighbour method, so the web app adds them.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from search.engine import ModelSet, timed

HEADS = ("category", "gender", "colour", "sub_category")


@dataclass
class Suggestion:
    model: str  # "fused" or "image-only"
    tags: dict[str, list[tuple[str, float]]]  # head -> [(label, probability)] best first
    heatmap: np.ndarray | None = None  # uint8 (80, 60, 3): CAM of the top category over the photo
    title_draft: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)

    def best(self, head: str) -> str:
        options = self.tags.get(head) or []
        return options[0][0] if options else ""


def suggest_tags(models: ModelSet, image: np.ndarray, title: str = "", top: int = 3) -> Suggestion:
    """The fused classifier reads photo and title; without a title the image-only twin answers, its category
    averaged with Image2Vec's own head (``ModelSet.category_probs``, the search's guess for a photo: on the
    demo's models test accuracy 0.592 for the twin alone, 0.721 averaged; README)."""
    from models.classifier import cam_overlay, class_activation_map, predict

    timings: dict[str, float] = {}
    title = (title or "").strip()
    role = "classifier" if title else "classifier_image"
    if not models.available(role):
        role = "classifier" if models.available("classifier") else "classifier_image"
    classifier = models.get(role)
    with timed(timings, "classifier"):
        probs = predict(classifier, image[None], [title] if title else None)
    names = classifier.config.label_names
    tags = {}
    for head, p in probs.items():
        order = np.argsort(-p[0])[:top]
        tags[head] = [(names[head][i], float(p[0][i])) for i in order]
    if role == "classifier_image" and models.available("encoder"):
        with timed(timings, "encoder"):
            guess = models.category_probs(models.embed_images(image[None]), image[None])[0]
        tags["category"] = sorted(guess.items(), key=lambda kv: -kv[1])[:top]
    with timed(timings, "cam"):
        labels, top_label = list(names["category"]), tags["category"][0][0]
        best = labels.index(top_label) if top_label in labels else int(np.argmax(probs["category"][0]))
        cam = class_activation_map(classifier, image[None], "category", best)[0]
        heatmap = cam_overlay(image, cam)
    return Suggestion("fused" if role == "classifier" else "image-only", tags, heatmap, "", timings)
