"""Tag suggestions: the fused classifier with a title; without one the search's own category guess."""

import numpy as np
import pytest
from PIL import Image

from search.tagging import suggest_tags


@pytest.fixture
def models(searchable):
    from webapp.services import get_models

    return get_models()


def photo() -> np.ndarray:
    return np.asarray(Image.new("RGB", (60, 80), "red"))


def test_without_a_title_the_category_is_the_searchs_photo_guess(models):
    image = photo()
    suggestion = suggest_tags(models, image)
    assert suggestion.model == "image-only"
    guess = models.category_probs(models.embed_images(image[None]), image[None])[0]
    expected = sorted(guess.items(), key=lambda kv: -kv[1])[:3]
    assert suggestion.tags["category"] == expected
    assert [p for _, p in expected] == sorted((p for _, p in expected), reverse=True)
    assert suggestion.tags["gender"] and suggestion.tags["colour"]  # the twin's other heads as before
    assert suggestion.heatmap.shape == (80, 60, 3) and suggestion.heatmap.dtype == np.uint8


def test_with_a_title_the_fused_classifier_answers(models):
    suggestion = suggest_tags(models, photo(), "Red leather handbag")
    assert suggestion.model == "fused"
    assert len(suggestion.tags["category"]) == 3
