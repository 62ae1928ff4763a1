"""A photo query runs the CNN once per view: the encoder's pass gives the vector and the image-only
classifier's input together (the classifier reads the encoder's frozen CNN)."""

import numpy as np
import pytest
from PIL import Image

from search import pipeline
from search.categories import reads_encoder


@pytest.fixture
def models(searchable):
    from webapp.services import get_models

    return get_models()


def count_cnn_passes(net, counts: list[int]):
    """Count the images that go through ``net``'s CNN (its first stage)."""
    return net.features[0].register_forward_hook(lambda module, args, out: counts.append(len(args[0])))


def test_a_photo_query_runs_the_cnn_once_per_view(models):
    assert reads_encoder(models)  # what search.train trains: the twin reads the encoder's frozen CNN
    encoder_images: list[int] = []
    twin_images: list[int] = []
    hooks = [count_cnn_passes(models.encoder().net, encoder_images),
             count_cnn_passes(models.classifier(image_only=True).net, twin_images)]
    try:
        photo = np.asarray(Image.new("RGB", (60, 80), "red"))
        encoded = pipeline.encode_photo(models, photo)
    finally:
        for hook in hooks:
            hook.remove()
    assert encoder_images == [2]  # one forward pass over the photo and its mirror image
    assert twin_images == []  # the classifier read the descriptors of that pass
    assert encoded.categories


def test_the_one_pass_gives_what_two_passes_gave(models):
    from models.classifier import MAIN_HEAD

    photos = np.stack([np.asarray(Image.new("RGB", (60, 80), c)) for c in ("red", "navy")])
    photos[1, 20:60, 15:45] = 250  # not just flat colours
    vectors, descriptors = models.encoder().embed_and_describe(photos)
    np.testing.assert_allclose(vectors, models.encoder().embed(photos), atol=1e-5)
    twin = models.classifier(image_only=True)
    np.testing.assert_allclose(twin.predict(None, descriptors=descriptors)[MAIN_HEAD],
                               twin.predict(photos, flip_average=True)[MAIN_HEAD], atol=1e-5)
