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


def test_an_int8_encoder_serves_a_photo_query_in_one_pass_per_view(searchable, settings):
    """``ENCODER_INT8``: the served encoder's CNN in int8 (``models.quantize``), the same one pass per view, and
    the same kind of hits as the float32 encoder's on the tiny catalog."""
    from models.quantize import int8_available, is_int8
    from webapp.services import get_models, reset_caches, search_vector

    if not int8_available():
        pytest.skip("this PyTorch has no int8 CPU engine")
    photo = np.asarray(Image.new("RGB", (60, 80), "red"))
    float_hits = search_vector(pipeline.encode_photo(get_models(), photo), 5).hits
    settings.ENCODER_INT8 = True
    reset_caches()
    try:
        models = get_models()
        assert is_int8(models.encoder().net)
        passes: list[int] = []
        hook = count_cnn_passes(models.encoder().net, passes)
        try:
            encoded = pipeline.encode_photo(models, photo)
        finally:
            hook.remove()
        assert passes == [2] and encoded.categories
        hits = search_vector(encoded, 5).hits
        assert [h.item.category for h in hits] == [h.item.category for h in float_hits]
    finally:
        reset_caches()


def test_the_one_pass_gives_what_two_passes_gave(models):
    from models.classifier import MAIN_HEAD

    photos = np.stack([np.asarray(Image.new("RGB", (60, 80), c)) for c in ("red", "navy")])
    photos[1, 20:60, 15:45] = 250  # not just flat colours
    vectors, descriptors = models.encoder().embed_and_describe(photos)
    np.testing.assert_allclose(vectors, models.encoder().embed(photos), atol=1e-5)
    twin = models.classifier(image_only=True)
    # the served encoder has its BatchNorms folded (and bf16 weights where bf16 infers); the classifier's own
    # copy of the CNN has not: the same probabilities to rounding
    np.testing.assert_allclose(twin.predict(None, descriptors=descriptors)[MAIN_HEAD],
                               twin.predict(photos, flip_average=True)[MAIN_HEAD], atol=1e-2)


def test_the_picture_drawn_beside_the_encoder_is_the_one_drawn_alone(demo_models_dir):
    """On the direct road the GAN's picture is drawn in a thread while the encoder runs: the picture is the one
    the GAN draws alone, and the vector and guess are those of the same query without the picture."""
    from search.trained import TrainedModels

    models = TrainedModels(demo_models_dir)
    assert models.available("sketch2image")
    sketch = np.full((80, 60), 255, np.uint8)
    sketch[10:70, 15] = sketch[10:70, 45] = sketch[10, 15:46] = sketch[69, 15:46] = 0
    encoded = pipeline.encode_sketch(models, sketch, "direct")
    assert encoded.generated is not None and encoded.generated.shape == (80, 60, 3)
    np.testing.assert_array_equal(encoded.generated, models.sketch2image().generate(sketch[None])[0])
    alone = pipeline.encode_sketch(models, sketch, "direct", imagine=False)
    np.testing.assert_allclose(encoded.vector, alone.vector, atol=1e-6)
    assert encoded.categories == alone.categories
    assert {"gan", "encoder"} <= set(encoded.timings_ms)


def openmp_runtime():
    """torch's own OpenMP runtime (GNU's libgomp or Intel's libiomp5) through ctypes, None where none is found.
    Other packages load their own copies (scikit-learn's libgomp), whose settings torch never reads."""
    import ctypes
    from pathlib import Path

    import torch

    maps, home = Path("/proc/self/maps"), str(Path(torch.__file__).parent)
    paths = sorted({line.split()[-1] for line in maps.read_text().splitlines() if line.count(" ") >= 5
                    and ("libgomp" in line or "libiomp5" in line) and home in line}) if maps.exists() else []
    return ctypes.CDLL(paths[0]) if paths else None


def test_the_gan_beside_the_encoder_keeps_the_workers_thread_count(demo_models_dir, monkeypatch):
    """A worker runs torch on one thread; the GAN's thread must too. OpenMP sizes its team per thread, so a fresh
    thread convolved on every core beside the encoder (on 2 cores, 17.5 ms instead of 7.7 a picture)."""
    import threading

    import torch

    from search.trained import TrainedModels

    omp = openmp_runtime()
    if omp is None:
        pytest.skip("no OpenMP runtime found in this process")
    models = TrainedModels(demo_models_dir)
    gan = models.sketch2image()
    seen = []
    drawn_alone = gan.generate

    def generate(sketches):
        seen.append((threading.current_thread() is threading.main_thread(), omp.omp_get_max_threads()))
        return drawn_alone(sketches)

    monkeypatch.setattr(gan, "generate", generate)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipeline.encode_sketch(models, np.full((80, 60), 255, np.uint8), "direct")
    finally:
        torch.set_num_threads(threads)
    assert seen == [(False, 1)]
