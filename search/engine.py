"""The old ``ModelSet`` names, kept only for the modules the lead is rewriting (``webapp/management/commands/
evaluate.py``, ``train.py`` and ``search/train.py``). New code imports their homes:

* the checkpoints and one loaded-model object per model: ``search.trained`` (``TrainedModels``,
  ``MODEL_FILES``, ``ModelMissingError``);
* encoding a query and ranking: ``search.pipeline`` (``Encoded``, ``SKETCH_ROADS``, ``encode``, ``search_vector``);
* a picture's likeliest categories: ``search.categories.picture_categories``;
* stage timings: ``search.timing.timed``.

Delete this module once those three import the new names (``tests/test_imports.py`` lists who may import it).
"""

from __future__ import annotations

import numpy as np

from search.categories import picture_categories
from search.pipeline import SKETCH_ROADS, Encoded, embed_sketches
from search.timing import timed
from search.trained import CHECKPOINT_KIND, MODEL_FILES, ModelMissingError, TrainedModels

__all__ = ["CHECKPOINT_KIND", "MODEL_FILES", "SKETCH_ROADS", "Encoded", "ModelMissingError", "ModelSet", "timed"]


class ModelSet(TrainedModels):
    """``TrainedModels`` plus the old method names evaluate.py calls, each one line onto its new home."""

    def get(self, role: str):
        """The bare network of a role (``loaded(role).net``)."""
        return self.loaded(role).net

    def version(self, role: str) -> str:
        return self.loaded(role).version

    def text_space(self) -> str:
        return self.text().index_space

    def embed_images(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        return self.encoder().embed(images, batch_size)

    def embed_sketches(self, sketches: np.ndarray, road: str) -> np.ndarray:
        return embed_sketches(self, sketches, road)

    def category_probs(self, vectors: np.ndarray, images: np.ndarray | None = None,
                       classifier_probs: np.ndarray | None = None) -> list[dict[str, float]]:
        return picture_categories(self, vectors, images, classifier_probs)
