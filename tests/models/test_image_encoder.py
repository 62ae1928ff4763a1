import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.image_encoder import EncoderConfig, ImageEncoder
from models.train_encoder import load_encoder, precision_at_k, train_encoder


def test_shapes_and_normalisation():
    model = ImageEncoder(EncoderConfig(widths=(8, 16, 16, 32), embed_dim=24, n_classes=5)).eval()
    x = torch.rand(3, 3, 80, 60) * 2 - 1
    emb, logits = model(x)
    assert emb.shape == (3, 24) and logits.shape == (3, 5)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    cam = model.class_activation_map(x, 2)
    assert cam.shape == (3, 80, 60) and cam.min() >= 0 and cam.max() <= 1 + 1e-6


def test_precision_at_k_excludes_self():
    vecs = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]
    labels = np.array([0, 0, 1, 1])
    assert precision_at_k(vecs, labels, vecs, labels, k=1) == 1.0


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = np.full((n, 80, 60, 3), 255, np.uint8)
    images[labels == 1, 20:60, 15:45] = 0  # class 1: a dark box
    return images, labels


def test_training_round_trip_and_resume(tmp_path):
    images, labels = _data()
    out = tmp_path / "enc.pt"
    payload = train_encoder(images, labels, images[:16], labels[:16], ["plain", "box"], out, profile="tiny",
                            device="cpu", show_progress=False)
    assert out.is_file() and not (tmp_path / "enc.pt.partial").exists()
    assert payload["metrics"]["val_accuracy"] > 0.9  # the box is trivially learnable
    loaded = load_checkpoint(out, "encoder")
    assert loaded["version"] == payload["version"] and loaded["train"]["history"]
    model = load_encoder(loaded)
    x = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 127.5 - 1
    reference = load_encoder(payload).embed(x)
    assert torch.allclose(model.embed(x), reference, atol=1e-6)


def test_resume_continues_from_partial(tmp_path, monkeypatch):
    from models import train_encoder as te

    images, labels = _data()
    out = tmp_path / "enc.pt"
    calls = []
    real = te.evaluate_encoder

    def stop_after_first_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(te, "evaluate_encoder", stop_after_first_epoch)
    try:
        te.train_encoder(images, labels, images[:8], labels[:8], ["a", "b"], out, profile="tiny", device="cpu",
                         show_progress=False)
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "enc.pt.partial").is_file() and not out.exists()
    monkeypatch.setattr(te, "evaluate_encoder", real)
    payload = te.train_encoder(images, labels, images[:8], labels[:8], ["a", "b"], out, profile="tiny",
                               device="cpu", show_progress=False)
    assert [h["epoch"] for h in payload["train"]["history"]] == [1, 2, 3, 4, 5, 6]
