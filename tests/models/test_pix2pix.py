"""pix2pix networks, the sketch -> image training loop, its checkpoint and resume."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import models.train_sketch2image as s2i
from models.checkpoint import load_checkpoint
from models.pix2pix import GANLoss, PatchDiscriminator, Pix2PixConfig, UnetGenerator
from models.train_sketch2image import (
    PROFILES,
    generate,
    load_generator,
    samples_dir,
    save_sheet,
    train_sketch2image,
)
from models.training import autocast_for

SMALL = Pix2PixConfig(ngf=8, ndf=8)


def pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Photos of coloured boxes on white and their outline sketches."""
    rng = np.random.default_rng(seed)
    photos = np.full((n, 80, 60, 3), 255, np.uint8)
    sketches = np.full((n, 80, 60), 255, np.uint8)
    for i in range(n):
        y0, x0 = rng.integers(5, 30), rng.integers(5, 25)
        y1, x1 = rng.integers(50, 75), rng.integers(35, 55)
        photos[i, y0:y1, x0:x1] = rng.integers(0, 220, 3)
        sketches[i, [y0, y1 - 1], x0:x1] = 0
        sketches[i, y0:y1, [x0, x1 - 1]] = 0
    return photos, sketches


def test_generator_maps_80x60_sketches_to_images_in_range():
    torch.manual_seed(0)
    g = UnetGenerator(SMALL).eval()
    x = torch.rand(2, 1, 80, 60) * 2 - 1
    y = g(x)
    assert y.shape == (2, 3, 80, 60)
    assert y.min() >= -1 and y.max() <= 1
    torch.testing.assert_close(g(x), y)  # no dropout at inference: same sketch, same image


def test_generator_uses_dropout_only_while_training():
    torch.manual_seed(0)
    g = UnetGenerator(SMALL).train()
    x = torch.rand(1, 1, 80, 60) * 2 - 1
    assert not torch.equal(g(x), g(x))


def test_patch_discriminator_scores_patches_of_the_pair():
    d = PatchDiscriminator(SMALL)
    scores = d(torch.zeros(3, 1, 80, 60), torch.zeros(3, 3, 80, 60))
    assert scores.shape[:2] == (3, 1) and scores.shape[2] > 4 and scores.shape[3] > 4


def test_gan_losses():
    scores = torch.tensor([[0.0, 1.0]])
    assert GANLoss("lsgan")(scores, True).item() == pytest.approx(0.5)
    assert GANLoss("lsgan")(scores, False).item() == pytest.approx(0.5)
    assert GANLoss("vanilla")(torch.zeros(4), True).item() == pytest.approx(np.log(2))
    with pytest.raises(ValueError):
        GANLoss("wgan")


def test_config_round_trips():
    cfg = Pix2PixConfig(ngf=16, dropout=0.0)
    assert Pix2PixConfig.from_dict(cfg.to_dict()) == cfg


def test_a_config_from_before_resize_convolution_rebuilds_the_former_network():
    old = {k: v for k, v in SMALL.to_dict().items() if k not in ("upsample", "norm")}
    cfg = Pix2PixConfig.from_dict(old)
    assert (cfg.upsample, cfg.norm) == ("transpose", "group")
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in UnetGenerator(cfg).modules())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in UnetGenerator(SMALL).modules())
    with pytest.raises(ValueError):
        Pix2PixConfig(upsample="pixelshuffle")


def nyquist_share(images: np.ndarray) -> float:
    """Share of an image batch's spectral energy (mean removed) at the Nyquist row and column.

    A stride-2 transposed convolution gives even and odd pixels different kernel taps: the pattern it draws
    alternates every pixel, which is energy at exactly these frequencies. Photos have little there.
    """
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    power = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
    h, w = x.shape[-2:]
    nyquist = power[..., h // 2, :].sum() + power[..., :, w // 2].sum() - power[..., h // 2, w // 2].sum()
    return float(nyquist / power.sum())


def tiny_trained_pictures(tmp_path, **design) -> tuple[np.ndarray, np.ndarray]:
    """A tiny generator trained 24 steps on box pairs, its pictures of 8 held-out sketches, and their photos."""
    photos, sketches = pairs(72)
    profile = replace(PROFILES["tiny"], epochs=3, lr=1e-3, **design)
    payload = train_sketch2image(photos[:64], sketches[:64], photos[64:], sketches[64:], tmp_path / "g.pt",
                                 profile=profile, device="cpu", show_progress=False)
    return generate(load_generator(payload), sketches[64:]), photos[64:]


CHECKERBOARD = 0.01  # measured: resize-convolution 0.0001-0.0002, the box photos 0.0007, transposed 0.46-0.51


def test_the_generator_draws_no_checkerboard(tmp_path):
    pictures, photos = tiny_trained_pictures(tmp_path)
    assert nyquist_share(photos) < CHECKERBOARD
    assert nyquist_share(pictures) < CHECKERBOARD


def test_the_checkerboard_measure_sees_the_former_transposed_convolution(tmp_path):
    pictures, _ = tiny_trained_pictures(tmp_path, upsample="transpose", norm="group")
    assert nyquist_share(pictures) > CHECKERBOARD


def test_cpu_training_runs_in_fp32_unless_bf16_is_asked_for():
    assert not torch.is_autocast_enabled("cpu")
    with autocast_for(torch.device("cpu"), training=False):
        assert not torch.is_autocast_enabled("cpu")


def test_tiny_training_writes_a_checkpoint_that_reloads(tmp_path):
    photos, sketches = pairs(40)
    variants = np.stack([sketches, 255 - (255 - sketches) // 2])  # two drawings of each item
    out = tmp_path / "s2i.pt"
    payload = train_sketch2image(photos[:32], variants[:, :32], photos[32:], sketches[32:], out, profile="tiny",
                                 device="cpu", show_progress=False)
    assert payload["kind"] == "sketch2image" and np.isfinite(payload["metrics"]["val_l1"])
    history = payload["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    best = min(history, key=lambda h: h["val_l1"])  # the checkpoint keeps the best epoch
    assert payload["metrics"]["best_epoch"] == best["epoch"]
    assert payload["metrics"]["val_l1"] == pytest.approx(best["val_l1"])
    assert (tmp_path / "s2i-samples" / "epoch-001.png").is_file()
    assert (tmp_path / "s2i-samples" / "epoch-002.png").is_file()
    assert (tmp_path / "s2i-losses.png").is_file()
    assert not (tmp_path / "s2i.pt.partial").exists()

    loaded = load_checkpoint(out, kind="sketch2image")
    assert loaded["version"] == payload["version"]
    images = generate(load_generator(loaded), sketches[32:])
    assert images.shape == (8, 80, 60, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, generate(load_generator(payload), sketches[32:]))

    sheet = save_sheet(load_generator(loaded), sketches[32:], photos[32:], tmp_path / "reports" / "sheet.png")
    with Image.open(sheet) as img:  # 4 triples a row, 2 rows, each cell 2x (3 x 60) by 2x 80 with padding
        assert img.size == (4 * (2 * 180 + 8) + 8, 2 * (2 * 80 + 8) + 8)


def test_interrupted_training_resumes_from_the_partial_file(tmp_path, monkeypatch):
    photos, sketches = pairs(24)
    profile = replace(PROFILES["tiny"], epochs=2)
    args = (photos[:16], sketches[:16], photos[16:], sketches[16:])
    whole = train_sketch2image(*args, tmp_path / "whole.pt", profile=profile, show_progress=False)

    real_grid = s2i.save_sample_grid

    def crash_on_second_epoch(sketch, generated, real, path):
        if path.name == "epoch-002.png":
            raise KeyboardInterrupt
        real_grid(sketch, generated, real, path)

    monkeypatch.setattr(s2i, "save_sample_grid", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_sketch2image(*args, tmp_path / "cut.pt", profile=profile, show_progress=False)
    assert (tmp_path / "cut.pt.partial").is_file()
    monkeypatch.setattr(s2i, "save_sample_grid", real_grid)

    resumed = train_sketch2image(*args, tmp_path / "cut.pt", profile=profile, show_progress=False)
    assert not (tmp_path / "cut.pt.partial").exists()
    assert [h["epoch"] for h in resumed["train"]["history"]] == [1, 2]
    for name, tensor in whole["model"].items():  # epochs are seeded: resuming repeats the uninterrupted run
        torch.testing.assert_close(resumed["model"][name], tensor, msg=name)


def test_a_budgeted_gan_runs_the_epochs_that_fit_and_its_probe_draws_no_sheet(tmp_path):
    photos, sketches = pairs(40)
    profile = replace(PROFILES["tiny"], epochs=30, budget_seconds=0.5, min_epochs=1)
    payload = train_sketch2image(photos[:32], sketches[:32], photos[32:], sketches[32:], tmp_path / "g.pt",
                                 profile=profile, device="cpu", show_progress=False)
    chosen = payload["train"]["profile"]["epochs"]
    assert 1 <= chosen < 30 and len(payload["train"]["history"]) == chosen
    assert payload["train"]["measured_epoch_seconds"] > 0
    sheets = sorted(p.name for p in samples_dir(tmp_path / "g.pt").glob("*.png"))
    assert sheets == [f"epoch-{e:03d}.png" for e in range(1, chosen + 1)]  # one per epoch, none of the probe's
