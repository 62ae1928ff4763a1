"""The encoder's CNN in int8 (``models.quantize``): the same vectors to rounding, from the checkpoint alone."""

import shutil

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.quantize import calibration_set, int8_available, is_int8, quantize_cnn
from models.train_encoder import load_encoder
from search.trained import TrainedModels

pytestmark = pytest.mark.skipif(not int8_available(), reason="this PyTorch has no int8 CPU engine")


def catalog_photos(n: int = 12) -> np.ndarray:
    """Items on white, as the catalog shoots them: a dark box, a coloured strip."""
    rng = np.random.default_rng(0)
    photos = np.full((n, 80, 60, 3), 255, np.uint8)
    for i in range(n):
        top, left = rng.integers(5, 30), rng.integers(5, 25)
        photos[i, top : top + 40, left : left + 25] = rng.integers(0, 200, 3)
    return photos


def test_the_calibration_set_holds_photos_and_sketches_as_rgb():
    photos = catalog_photos(20)
    sketches = np.full((10, 80, 60), 255, np.uint8)
    picked = calibration_set(photos, sketches, n_photos=8, n_sketches=4)
    assert picked.shape == (12, 80, 60, 3) and picked.dtype == np.uint8
    assert (picked[:1] == photos[:1]).all() and (picked[-1] == 255).all()
    assert calibration_set(photos, None, n_photos=50).shape == (20, 80, 60, 3)  # never more than there are


def test_the_tiny_encoders_checkpoint_carries_its_calibration_pictures(trained_models_dir):
    payload = load_checkpoint(trained_models_dir / "encoder.pt", "encoder")
    calibration = np.asarray(payload["calibration"])
    assert calibration.dtype == np.uint8 and calibration.shape[1:] == (80, 60, 3) and len(calibration) > 0


def test_int8_vectors_and_descriptors_agree_with_float32(trained_models_dir):
    payload = load_checkpoint(trained_models_dir / "encoder.pt", "encoder")
    float_net = load_encoder(payload)
    int8_net = quantize_cnn(load_encoder(payload), np.asarray(payload["calibration"]))
    assert is_int8(int8_net) and not is_int8(float_net)
    assert not [m for m in int8_net.features.modules() if isinstance(m, torch.nn.Conv2d)]  # every convolution
    x = torch.from_numpy(catalog_photos()).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.inference_mode():
        (v32, d32), (v8, d8) = float_net.embed_and_describe(x), int8_net.embed_and_describe(x)
    assert torch.nn.functional.cosine_similarity(v32, v8).min() > 0.98
    assert d8.shape == d32.shape and torch.nn.functional.cosine_similarity(d32, d8).min() > 0.98


@pytest.mark.parametrize("int8", [True, False])
def test_the_served_encoder_is_int8_only_when_asked_and_calibrated(trained_models_dir, tmp_path, int8):
    shutil.copy(trained_models_dir / "encoder.pt", tmp_path / "encoder.pt")
    net = TrainedModels(tmp_path, int8=int8).encoder().net
    assert is_int8(net) == int8

    payload = torch.load(tmp_path / "encoder.pt", weights_only=False)
    for calibration in (None, payload["calibration"][:0]):  # a checkpoint of before, or of an empty val split
        payload["calibration"] = calibration
        torch.save(payload, tmp_path / "encoder.pt")
        assert not is_int8(TrainedModels(tmp_path, int8=int8).encoder().net)  # float32 whatever is asked
