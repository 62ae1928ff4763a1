"""Text search: tokenizer edge cases, the encoder's output, and a tiny training run through its checkpoint."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from models.image_encoder import EncoderConfig, ImageEncoder
from models.text import UNK, TextConfig, TextEncoder, Tokenizer, colour_histogram
from models.train_text import (
    PROFILES,
    load_text_model,
    retrieval_metrics_from_vectors,
    text_retrieval_metrics,
    train_text,
)
from models.training import EpochCheckpointer

TITLES = ["Turtle Check Men Navy Blue Shirt", "Peter England Men Party Blue Jeans", "Puma Men Red T-shirt",
          "Nike Women Black Shoes", "Titan Women Silver Watch", "Puma Men Red T-shirt"]
COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 200), "black": (15, 15, 15), "silver": (180, 180, 190),
           "green": (30, 160, 40), "yellow": (230, 210, 20)}
KINDS = ["shirt", "jeans", "shoes", "watch"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.build(TITLES, min_count=1, max_len=8)


def test_tokenizer_lowercases_and_splits_punctuation(tokenizer):
    assert tokenizer.words("Ray-Ban MEN'S  T-Shirt!!") == ["ray", "ban", "men", "s", "t", "shirt"]
    ids, grams, lengths = tokenizer.encode(["PUMA, men: red"])
    assert ids[0].tolist() == [tokenizer.index["puma"], tokenizer.index["men"], tokenizer.index["red"]]
    assert lengths.tolist() == [3]


def test_tokenizer_handles_empty_and_whitespace(tokenizer):
    ids, grams, lengths = tokenizer.encode(["", "   ", "?!"])
    assert ids.shape == (3, 1) and lengths.tolist() == [1, 1, 1]
    assert (ids == tokenizer.index[UNK]).all() and (grams == 0).all()


def test_tokenizer_handles_non_ascii(tokenizer):
    assert tokenizer.words("Café CRÈME") == ["cafe", "creme"]
    ids, grams, lengths = tokenizer.encode(["빨간 셔츠", "😀 red"])
    assert lengths.tolist()[0] == 2 and (grams[0, :2] > 0).any()
    assert ids[1, lengths[1] - 1] == tokenizer.index["red"]


def test_tokenizer_caps_very_long_input(tokenizer):
    ids, grams, lengths = tokenizer.encode(["red " * 100_000, "x" * 1_000_000])
    assert ids.shape[1] == tokenizer.max_len and lengths.tolist() == [tokenizer.max_len, 1]
    assert grams.shape[2] == tokenizer.max_ngrams and int(grams.max()) <= tokenizer.n_buckets


def test_unknown_brand_gets_unk_id_and_character_trigrams(tokenizer):
    ids, grams, _ = tokenizer.encode(["Zzyzxbrand", "Pumas"])
    assert ids[0, 0] == tokenizer.index[UNK] and ids[1, 0] == tokenizer.index[UNK]
    assert (grams[0, 0] > 0).sum() >= 3
    # A misspelt brand shares trigrams with the real one: its vector is not just <unk>.
    assert set(grams[1, 0].tolist()) & set(tokenizer.ngram_ids("puma")) - {0}


def test_tokenizer_round_trips_through_dict(tokenizer):
    again = Tokenizer.from_dict(tokenizer.to_dict())
    for a, b in zip(tokenizer.encode(TITLES + ["new brand"]), again.encode(TITLES + ["new brand"]), strict=True):
        assert torch.equal(a, b)


def test_text_encoder_shape_and_normalisation(tokenizer):
    torch.manual_seed(0)
    enc = TextEncoder(TextConfig(vocab_size=len(tokenizer), n_buckets=tokenizer.n_buckets, word_dim=8, hidden=8,
                                 embed_dim=12)).eval()
    batch = tokenizer.encode(["", "puma men red t-shirt", "x" * 500, "한국어"])
    with torch.no_grad():
        out = enc(*batch)
    assert out.shape == (4, 12) and torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    # Padding does not change a text's vector.
    with torch.no_grad():
        alone = enc(*tokenizer.encode(["puma men red t-shirt"]))
    assert torch.allclose(alone[0], out[1], atol=1e-5)


def test_colour_histogram_sees_colour_not_background():
    img = torch.ones(2, 3, 8, 8)
    img[0, :, 2:6, 2:6] = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)  # red square on white
    hist = colour_histogram(img)
    assert hist.shape == (2, 6**3 + 13) and hist[1].abs().sum() == 0
    assert hist[0, : 6**3].argmax() == 5 * 36 and 0 < hist[0, 6**3] < 1  # the bin of (255, 0, 0)
    assert torch.allclose(hist[0, -12:].view(3, 4)[:, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)  # mean colour


def synthetic_catalog(n: int, seed: int):
    """Photos are flat-coloured shapes; titles name the colour and the kind."""
    rng = np.random.default_rng(seed)
    colours, kinds = list(COLOURS), KINDS
    images = np.full((n, 80, 60, 3), 255, np.uint8)
    titles, labels = [], np.zeros(n, np.int64)
    for i in range(n):
        c, k = rng.integers(len(colours)), rng.integers(len(kinds))
        top, bottom = (10, 70) if k % 2 == 0 else (25, 55)
        left, right = (5, 55) if k < 2 else (18, 42)
        images[i, top:bottom, left:right] = COLOURS[colours[c]]
        titles.append(f"Brand{i % 3} Men {colours[c].title()} {kinds[k].title()}")
        labels[i] = k
    return images, titles, labels


@pytest.fixture(scope="module")
def encoder_payload(tmp_path_factory):
    torch.manual_seed(0)
    config = EncoderConfig(widths=(8, 16, 16, 32), embed_dim=16, n_classes=len(KINDS), class_names=KINDS)
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    save_checkpoint(path, kind="encoder", config=config.to_dict(), model=ImageEncoder(config))
    return load_checkpoint(path, "encoder")


@pytest.fixture(scope="module")
def data():
    return synthetic_catalog(96, 0), synthetic_catalog(32, 1)


def test_tiny_training_round_trips_through_checkpoint(tmp_path, data, encoder_payload):
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    out = tmp_path / "text.pt"
    payload = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, out, profile="tiny", device="cpu",
                         show_progress=False)
    assert payload["kind"] == "text" and out.is_file() and not out.with_name("text.pt.partial").exists()
    assert payload["config"]["encoder_version"] == encoder_payload["version"]
    assert {"val_r_at_10", "val_p_at_5"} <= set(payload["metrics"])
    assert len(payload["train"]["history"]) == PROFILES["tiny"].epochs

    model = load_text_model(payload, encoder_payload)
    reloaded = load_text_model(load_checkpoint(out, "text"), encoder_payload)
    assert model.space == "joint" and model.dim == PROFILES["tiny"].embed_dim
    queries = ["red shirt", "", "Brand9 Men Green Watch", "ñandú 🙂 " * 300]
    t1, t2 = model.encode_text(queries), reloaded.encode_text(queries)
    assert t1.dtype == np.float32 and t1.shape == (4, model.dim)
    np.testing.assert_allclose(t1, t2, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(t1, axis=1), 1.0, atol=1e-5)
    i1, i2 = model.encode_images(va_x[:5]), reloaded.encode_images(va_x[:5])
    assert i1.shape == (5, model.dim)
    np.testing.assert_allclose(i1, i2, atol=1e-5)

    gallery = np.concatenate([tr_x, va_x])
    metrics = text_retrieval_metrics(model, va_t, np.arange(len(tr_x), len(gallery)), gallery, va_y,
                                     np.concatenate([tr_y, va_y]))
    assert 0.0 <= metrics["r_at_10"] <= 1.0 and 0.0 <= metrics["p_at_5"] <= 1.0


def test_partial_file_of_another_profile_is_refused_until_a_restart(tmp_path, data, encoder_payload):
    from models.loop import ResumeError

    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    out = tmp_path / "text.pt"
    EpochCheckpointer(out).save({"another": "signature"}, model={}, epoch=1, history=[{"seconds": 0.0}])
    with pytest.raises(ResumeError, match="another configuration.*--restart"):
        train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, out, profile="tiny", show_progress=False)
    payload = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, out, profile="tiny",
                         show_progress=False, resume=False)
    assert [h["epoch"] for h in payload["train"]["history"]] == [1, 2]


def test_resume_continues_after_interruption(tmp_path, data, encoder_payload, monkeypatch):
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    out = tmp_path / "text.pt"
    import models.train_text as tt

    calls = {"n": 0}
    real = tt.retrieval_metrics_from_vectors

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tt, "retrieval_metrics_from_vectors", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, out, profile="tiny", show_progress=False)
    partial = out.with_name("text.pt.partial")
    assert partial.is_file() and not out.exists()
    monkeypatch.setattr(tt, "retrieval_metrics_from_vectors", real)
    resumed = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, out, profile="tiny",
                         show_progress=False)
    history = resumed["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and not partial.exists()
    # Epoch 1 came from the partial file, not from a new run: its timing is the one saved there.
    assert history[0]["seconds"] == torch.load(out, weights_only=False)["train"]["history"][0]["seconds"]


def test_load_refuses_another_encoder(tmp_path, data, encoder_payload):
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    payload = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, tmp_path / "t.pt",
                         profile=replace(PROFILES["tiny"], epochs=1), show_progress=False)
    with pytest.raises(CheckpointError):
        load_text_model(payload, dict(encoder_payload, version="encoder-000000000000"))
    text_only = load_text_model(payload)
    assert text_only.encode_text(["red"]).shape == (1, text_only.dim)
    with pytest.raises(CheckpointError):
        text_only.encode_images(va_x[:1])


def test_image2vec_space_uses_encoder_vectors(tmp_path, data, encoder_payload):
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    prof = replace(PROFILES["tiny"], epochs=1, space="image2vec", loss="hinge")
    payload = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, tmp_path / "t.pt", profile=prof,
                         show_progress=False)
    model = load_text_model(payload, encoder_payload)
    assert model.space == "image2vec" and model.dim == 16
    from models.train_encoder import embed_array, load_encoder
    expected = embed_array(load_encoder(encoder_payload), va_x[:4], torch.device("cpu"))
    np.testing.assert_allclose(model.encode_images(va_x[:4]), expected, atol=1e-5)


def test_retrieval_metrics_by_hand():
    gallery = np.arange(12, 0, -1, dtype=np.float32)[:, None]  # scores 12, 11, ..., 1 for the query [1]
    labels = np.array([1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1])
    m = retrieval_metrics_from_vectors(np.ones((2, 1), np.float32), np.array([9, 10]), gallery, np.array([1, 2]),
                                       labels)
    assert m["r_at_10"] == 0.5  # item 9 is 10th, item 10 is 11th
    assert m["p_at_5"] == pytest.approx((3 / 5 + 2 / 5) / 2)


def test_augmented_training_path_runs(tmp_path, data, encoder_payload):
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    prof = replace(PROFILES["tiny"], epochs=1, augment=True)
    payload = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, tmp_path / "t.pt", profile=prof,
                         show_progress=False)
    assert np.isfinite(payload["train"]["history"][0]["loss"])


def test_finetuned_tower_starts_from_image2vec_and_serves_photos_alone(tmp_path, data, encoder_payload):
    """With tower="finetune" the photo side is the model's own CNN: it starts as Image2Vec's, moves with
    training, and embeds photos after a reload without the encoder checkpoint."""
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    prof = replace(PROFILES["tiny"], epochs=2, tower="finetune", augment=True)
    out = tmp_path / "t.pt"
    payload = train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, out, profile=prof, device="cpu",
                         show_progress=False)
    tower = payload["config"]["tower"]
    assert tower == {"widths": [8, 16, 16, 32], "blocks": 1, "stem_stride": 2}
    start = {k: v for k, v in encoder_payload["model"].items() if k.startswith("features.")}
    tuned = {k.replace("tower.", "features.", 1): v for k, v in payload["model"].items() if k.startswith("tower.")}
    assert set(tuned) == set(start)
    assert any(not torch.equal(tuned[k], start[k]) for k in start if start[k].is_floating_point())  # it trained

    alone = load_text_model(load_checkpoint(out, "text"))  # no encoder given
    vecs = alone.encode_images(va_x[:4])
    assert vecs.shape == (4, prof.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(vecs, load_text_model(payload, encoder_payload).encode_images(va_x[:4]), atol=1e-5)


def test_unknown_tower_is_refused(tmp_path, data, encoder_payload):
    (tr_x, tr_t, tr_y), (va_x, va_t, va_y) = data
    with pytest.raises(ValueError, match="tower"):
        train_text(tr_x, tr_t, tr_y, va_x, va_t, va_y, encoder_payload, tmp_path / "t.pt",
                   profile=replace(PROFILES["tiny"], tower="imagenet"), show_progress=False)
