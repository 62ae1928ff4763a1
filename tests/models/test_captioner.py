"""The caption drafter, trained for seconds on synthetic items, and its BLEU and nearest-neighbour helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.train_captioner as tcap
from models.captioner import (
    caption_image_features,
    generate_captions,
    load_captioner,
    nearest_neighbour_captions,
)
from models.checkpoint import load_checkpoint
from models.metrics import bleu4
from models.vocab import Vocab

COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Green": (30, 180, 30)}


def make_items(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(200, 256, (n, 80, 60, 3)).astype(np.uint8)
    titles = []
    for i in range(n):
        colour = list(COLOURS)[i % 3]
        images[i, 20:60, 10:50] = COLOURS[colour]
        titles.append(f"Nike Men {colour} Sports Shoes")
    return images, titles


@pytest.fixture(scope="module")
def data():
    return (*make_items(48, 0), *make_items(8, 1))


def train(data, path, **kw):
    ti, tt, vi, vt = data
    return tcap.train_captioner(ti, tt, vi, vt, path, profile="tiny", device="cpu", show_progress=False, **kw)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("cap") / "captioner.pt"
    return path, train(data, path)


def test_checkpoint_and_generation(trained, data):
    path, payload = trained
    assert payload["kind"] == "captioner" and {"val_loss", "val_bleu4"} <= set(payload["metrics"])
    model = load_captioner(payload)
    captions = generate_captions(model, data[2], beam_size=1)
    assert len(captions) == 8 and all(isinstance(c, str) for c in captions)
    assert all("<unk>" not in c and "<eos>" not in c for c in captions)
    beams = generate_captions(model, data[2], beam_size=3)
    assert len(beams) == 8 and all(isinstance(c, str) for c in beams)
    assert all(len(c.split()) <= model.config.max_len for c in beams)
    reloaded = load_captioner(load_checkpoint(path, "captioner"))
    assert generate_captions(reloaded, data[2], beam_size=1) == captions
    assert generate_captions(reloaded, data[2]) == beams
    assert generate_captions(model, data[2][:0]) == []


def test_resume_from_partial(data, tmp_path, monkeypatch):
    path = tmp_path / "resumed.pt"
    real = tcap.evaluate_captioner
    calls = {"n": 0}

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tcap, "evaluate_captioner", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(data, path)
    partial = path.with_name(path.name + ".partial")
    first_epoch = torch.load(partial, map_location="cpu", weights_only=False)["history"][0]
    monkeypatch.setattr(tcap, "evaluate_captioner", real)
    payload = train(data, path)
    assert payload["train"]["history"][0] == first_epoch
    assert [h["epoch"] for h in payload["train"]["history"]] == [1, 2]
    assert not partial.exists()


def test_nearest_neighbour_captions(trained, data):
    model = load_captioner(trained[1])
    feats = caption_image_features(model, data[0])
    assert feats.shape == (48, model.feature_dim)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    gallery = np.eye(4, dtype=np.float32)
    titles = ["a b c d", "e f g h", "i j k l", "m n o p"]
    query = np.array([[0, 0.1, 0.9, 0], [2, 0, 0, 0]], dtype=np.float32)
    assert nearest_neighbour_captions(gallery, titles, query) == ["i j k l", "a b c d"]


def test_bleu4_scale():
    refs = ["Nike Men Black Sports Shoes", "Puma Women Blue Round Neck T-shirt"]
    assert bleu4(refs, refs) == pytest.approx(1.0)
    assert bleu4(["alpha beta gamma delta epsilon"] * 2, refs) == 0.0
    partly = bleu4(["Nike Men Black Casual Shoes", "Puma Women Blue Round Neck T-shirt"], refs)
    assert 0.0 < partly < 1.0
    with pytest.raises(ValueError):
        bleu4(refs, refs[:1])


def test_vocab_title_mode_round_trips():
    titles = ["Nike Men Black Sports Shoes", "s.Oliver Women T-Shirt"]
    vocab = Vocab.build(titles, "title", min_count=1)
    for title in titles:
        ids = vocab.encode(title, 16, bos=True, eos=True)
        assert vocab.decode(ids) == title
    assert vocab.decode(vocab.encode("Nike Women", 16)) == "Nike Women"
    assert vocab.encode_batch(titles, 4, bos=True, eos=True).shape == (2, 4)


def test_a_budgeted_captioner_runs_the_epochs_that_fit(data, tmp_path):
    from dataclasses import replace

    profile = replace(tcap.PROFILES["tiny"], epochs=40, budget_seconds=0.3, min_epochs=1)
    payload = tcap.train_captioner(*data, tmp_path / "c.pt", profile=profile, device="cpu", show_progress=False)
    chosen = payload["train"]["profile"]["epochs"]
    assert 1 <= chosen < 40 and len(payload["train"]["history"]) == chosen
    assert payload["train"]["measured_epoch_seconds"] > 0
