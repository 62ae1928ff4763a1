"""The fused classifier and its image-only twin, trained for seconds on synthetic items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.train_classifier as tc
from models.checkpoint import load_checkpoint
from models.classifier import (
    MAIN_HEAD,
    cam_overlay,
    class_activation_map,
    image_features,
    jet_colormap,
    load_classifier,
    predict,
)
from models.training import to_float_images
from models.vocab import Vocab

KINDS = [("Tshirts", "Topwear", "Red"), ("Casual Shoes", "Shoes", "Blue"), ("Handbags", "Bags", "Green")]
RGB = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Green": (30, 180, 30)}


def make_items(n: int, seed: int):
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(KINDS), n)
    images = rng.integers(200, 256, (n, 80, 60, 3)).astype(np.uint8)
    titles, rows = [], []
    for i, k in enumerate(kind):
        cat, sub, colour = KINDS[k]
        y0 = int(rng.integers(0, 40))
        images[i, y0 : y0 + 40, 10:50] = RGB[colour]
        gender = ["Men", "Women"][i % 2]
        titles.append(f"Brand {gender} {colour} {cat}")
        rows.append(type("Row", (), {"category": cat, "sub_category": sub, "gender": gender, "colour": colour}))
    return images, titles, rows


@pytest.fixture(scope="module")
def data():
    train_images, train_titles, train_rows = make_items(48, 0)
    val_images, val_titles, val_rows = make_items(12, 1)
    train_targets, names = tc.catalog_targets(train_rows)
    val_targets, _ = tc.catalog_targets(val_rows, names)
    return train_images, train_titles, train_targets, val_images, val_titles, val_targets, names


def train(data, path, use_text=True, **kw):
    ti, tt, tg, vi, vt, vg, names = data
    return tc.train_classifier(ti, tt, tg, vi, vt, vg, names, path, use_text=use_text, profile="tiny", device="cpu",
                               show_progress=False, **kw)


@pytest.fixture(scope="module")
def fused(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "fused.pt"
    return path, train(data, path)


def test_checkpoint_describes_itself(fused, data):
    path, payload = fused
    assert payload["kind"] == "classifier" and payload["config"]["use_text"] is True
    assert list(payload["config"]["label_names"]) == [MAIN_HEAD, "sub_category", "gender", "colour"]
    assert "val_accuracy" in payload["metrics"] and "val_accuracy_no_title" in payload["metrics"]
    assert len(payload["train"]["history"]) == 2
    assert not path.with_name(path.name + ".partial").exists()


def test_predict_shapes_and_probabilities(fused, data):
    model = load_classifier(fused[1])
    images, titles, names = data[3], data[4], data[6]
    for given in (titles, None, [""] * len(titles)):
        probs = predict(model, images, given)
        assert set(probs) == set(names)
        for head, p in probs.items():
            assert p.shape == (len(images), len(names[head]))
            np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(predict(model, images, None)[MAIN_HEAD], predict(model, images, [""] * 12)[MAIN_HEAD],
                               atol=1e-6)
    with pytest.raises(ValueError):
        predict(model, images, titles[:3])


def test_checkpoint_round_trip_gives_same_predictions(fused, data):
    path, payload = fused
    before = predict(load_classifier(payload), data[3], data[4])
    after = predict(load_classifier(load_checkpoint(path, "classifier")), data[3], data[4])
    for head in before:
        np.testing.assert_allclose(before[head], after[head], atol=1e-6)


def test_image_only_twin_ignores_titles(data, tmp_path):
    payload = train(data, tmp_path / "image.pt", use_text=False)
    assert payload["config"]["use_text"] is False and payload["config"]["vocab"] is None
    model = load_classifier(payload)
    with_titles = predict(model, data[3], data[4])[MAIN_HEAD]
    np.testing.assert_allclose(with_titles, predict(model, data[3], None)[MAIN_HEAD], atol=1e-6)
    assert image_features(model, data[3]).shape == (12, model.image_dim)


def test_resume_from_partial(data, tmp_path, monkeypatch):
    path = tmp_path / "resumed.pt"
    real = tc.evaluate_classifier
    calls = {"n": 0}

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tc, "evaluate_classifier", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(data, path)
    partial = path.with_name(path.name + ".partial")
    assert partial.exists() and not path.exists()
    monkeypatch.setattr(tc, "evaluate_classifier", real)
    first_epoch = torch.load(partial, map_location="cpu", weights_only=False)["history"][0]
    payload = train(data, path)
    assert payload["train"]["history"][0] == first_epoch
    assert [h["epoch"] for h in payload["train"]["history"]] == [1, 2]
    assert path.exists() and not partial.exists()


def test_class_activation_map(fused, data):
    model = load_classifier(fused[1])
    images = data[3][:5]
    cam = class_activation_map(model, images, MAIN_HEAD, 1)
    assert cam.shape == (5, 80, 60) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 and np.allclose(cam.max(axis=(1, 2)), 1.0)
    per_item = class_activation_map(model, images, "colour", [0, 1, 2, 0, 1])
    assert per_item.shape == (5, 80, 60)
    overlay = cam_overlay(images[0], cam[0])
    assert overlay.shape == (80, 60, 3) and overlay.dtype == np.uint8
    assert np.array_equal(jet_colormap(np.array([0.0, 1.0])), np.array([[0, 0, 0.5], [0.5, 0, 0]], dtype=np.float32))


def test_cam_is_exact_for_the_cam_head(fused, data):
    model = load_classifier(fused[1])
    x = to_float_images(torch.from_numpy(data[3][:4]))
    with torch.no_grad():
        fmap = model.features(x)
        head = model.cam_heads[MAIN_HEAD]
        logits = head(fmap.mean(dim=(2, 3)))
        maps = torch.einsum("nchw,kc->nkhw", fmap, head.weight)
    torch.testing.assert_close(maps.mean(dim=(2, 3)) + head.bias, logits, atol=1e-4, rtol=1e-4)


def test_vocab_words_mode():
    vocab = Vocab.build(["Puma Men T-Shirt", "puma women t-shirt"], "words", min_count=1)
    assert vocab.encode("PUMA T-shirt", 8) == vocab.encode("puma t shirt", 8)
    assert vocab.encode(None, 8) == [] and vocab.encode("zzz", 8) == [1]
    assert Vocab.from_dict(vocab.to_dict()).words == vocab.words


def test_flip_average_gives_an_image_and_its_mirror_image_one_prediction(fused, data):
    model = load_classifier(fused[1])
    images, titles = data[3][:4], data[4][:4]
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    both = predict(model, images, titles, flip_average=True)
    again = predict(model, mirrored, titles, flip_average=True)
    for head, probs in both.items():
        np.testing.assert_allclose(probs, again[head], atol=1e-5)
        np.testing.assert_allclose(probs, (predict(model, images, titles)[head]
                                           + predict(model, mirrored, titles)[head]) / 2, atol=1e-5)
