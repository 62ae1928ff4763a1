import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.image_encoder import EncoderConfig, ImageEncoder
from models.metrics import precision_at_k, recall_at_k
from models.train_encoder import embed_array, load_encoder, train_encoder


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
    assert precision_at_k(vecs, labels, vecs, labels, k=1, exclude_self=True) == 1.0
    # without the exclusion a query finds itself first; query 0's second neighbour is item 1, same label
    assert precision_at_k(vecs[[0]], np.array([1]), vecs, labels, k=2) == 0.0
    assert recall_at_k(vecs[[2]], np.array([2]), vecs, k=2) == 1.0


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


def test_keep_best_saves_the_best_validation_epoch_also_across_a_resume(tmp_path, monkeypatch):
    """With keep_best the checkpoint holds the weights of the epoch with the best validation P@5 (here
    the 2nd of 4, the run interrupted after the 3rd and resumed), not the last."""
    from dataclasses import replace

    from models import train_encoder as te

    images, labels = _data(32)
    out = tmp_path / "enc.pt"
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.6])
    weights = []

    def scripted(model, *args, **kwargs):
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        if len(weights) == 4:
            raise KeyboardInterrupt
        return {"val_accuracy": 0.0, "val_p_at_5": next(scores)}

    monkeypatch.setattr(te, "evaluate_encoder", scripted)
    prof = replace(te.PROFILES["tiny"], epochs=4, keep_best=True)
    try:
        te.train_encoder(images, labels, images[:8], labels[:8], ["a", "b"], out, profile=prof, device="cpu",
                         show_progress=False)
    except KeyboardInterrupt:
        pass
    payload = te.train_encoder(images, labels, images[:8], labels[:8], ["a", "b"], out, profile=prof, device="cpu",
                               show_progress=False)
    assert payload["train"]["kept_epoch"] == 2 and payload["metrics"]["val_p_at_5"] == 0.9
    saved = load_checkpoint(out, "encoder")["model"]
    assert all(torch.equal(saved[k], weights[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], weights[-1][k]) for k in saved)


def test_deeper_stages_keep_the_feature_layout(tmp_path):
    """blocks > 1 stacks residual units per stage; each stage stays one element of ``features``, so
    ``features[-1]`` is the whole last stage (the text descriptor and CAMs rely on it), and one-unit
    networks keep the keys of earlier checkpoints."""
    from dataclasses import replace

    from models.image_encoder import backbone
    from models.train_encoder import PROFILES

    one, two = backbone((8, 16, 16, 32), 1), backbone((8, 16, 16, 32), 2)
    assert len(one) == len(two) == 8
    assert "1.conv1.0.weight" in one.state_dict() and "1.1.conv1.0.weight" in two.state_dict()
    x = torch.rand(2, 3, 80, 60) * 2 - 1
    assert one(x).shape == two(x).shape == (2, 32, 5, 4)
    assert two[:-1](x).shape == (2, 16, 5, 4)

    images, labels = _data(32)
    out = tmp_path / "deep.pt"
    payload = train_encoder(images, labels, images[:8], labels[:8], ["plain", "box"], out,
                            profile=replace(PROFILES["tiny"], epochs=1, blocks=2), device="cpu", show_progress=False)
    assert payload["config"]["blocks"] == 2
    model = load_encoder(load_checkpoint(out, "encoder"))
    assert model.class_activation_map(x, 1).shape == (2, 80, 60)
    assert torch.allclose(model.embed(x), load_encoder(payload).embed(x), atol=1e-6)


def test_flip_average_gives_a_photo_and_its_mirror_image_one_vector():
    from models.train_encoder import embed_array

    torch.manual_seed(0)
    model = ImageEncoder(EncoderConfig(widths=(8, 16, 16, 32), embed_dim=16, n_classes=3)).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 80, 60, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    cpu = torch.device("cpu")
    plain, averaged = embed_array(model, images, cpu), embed_array(model, images, cpu, flip_average=True)
    np.testing.assert_allclose(averaged, embed_array(model, mirrored, cpu, flip_average=True), atol=1e-5)
    assert not np.allclose(plain, embed_array(model, mirrored, cpu), atol=1e-3)  # without it they differ
    np.testing.assert_allclose(np.linalg.norm(averaged, axis=1), 1.0, atol=1e-5)


def test_a_loaded_encoder_answers_channels_last_with_the_same_vectors_at_any_batch_size():
    from models.train_encoder import embed_array

    torch.manual_seed(3)
    config = EncoderConfig(widths=(8, 16, 16, 32), blocks=2, stem_stride=1, embed_dim=16, n_classes=3)
    trained = ImageEncoder(config).eval()
    for m in trained.modules():  # running statistics as after training, not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    loaded = load_encoder({"config": config.to_dict(), "model": trained.state_dict()})
    conv = next(m for m in loaded.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not loaded.training
    images = np.random.default_rng(0).integers(0, 256, (37, 80, 60, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    reference = embed_array(trained, images, cpu, batch_size=37, flip_average=True)
    for batch in (None, 1, 5, 64):  # None: the CPU's default chunk (inference_batch)
        np.testing.assert_allclose(embed_array(loaded, images, cpu, batch_size=batch, flip_average=True), reference,
                                   atol=1e-5)


def test_distorted_sketches_keep_white_paper_and_their_strokes():
    from models.train_encoder import distort_sketches

    x = torch.ones(8, 3, 80, 60)
    x[:, :, 30:50, 20:40] = -1.0  # a dark square
    out = distort_sketches(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 - 1e-5 and out.max() <= 1 + 1e-5
    assert torch.allclose(out[:, :, :3, :3], torch.ones(8, 3, 3, 3))  # corners stay paper, not black fill
    ink = (out < 0).float().mean(dim=(1, 2, 3))
    assert (ink > 0.02).all()  # the strokes stay on the page
    assert not torch.allclose(out[0], out[1])  # each sketch bent its own way


def test_people_s_drawings_join_the_batches_with_their_labels(tmp_path, monkeypatch):
    """A pool of drawings of class 1 only: with it, sketches of class 1 are learnt although no photo sketch is
    passed; the checkpoint says how many drawings it saw."""
    from dataclasses import replace

    from models import train_encoder as te

    images, labels = _data()
    pool = np.full((20, 80, 60), 255, np.uint8)
    pool[:, 20:60, 15:45] = 0
    prof = replace(te.PROFILES["tiny"], pool_fraction=0.3, distort_fraction=0.5, sketch_fraction=0.0)
    payload = train_encoder(images, labels, images[:16], labels[:16], ["plain", "box"], tmp_path / "enc.pt",
                            profile=prof, device="cpu", show_progress=False, pool=(pool, np.ones(20, np.int64)))
    assert payload["train"]["n_pool"] == 20
    assert payload["metrics"]["val_accuracy"] > 0.9


def test_a_budgeted_profile_runs_the_epochs_that_fit():
    from dataclasses import replace

    from models.loop import budget_epochs
    from models.train_encoder import PROFILES

    prof = replace(PROFILES["tiny"], epochs=12, budget_seconds=1800, min_epochs=3)
    assert budget_epochs(prof, 100.0) == 12  # a fast machine: all of them
    assert budget_epochs(prof, 300.0) == 6
    assert budget_epochs(prof, 5000.0) == 3  # never under min_epochs
    assert budget_epochs(replace(prof, budget_seconds=None), 5000.0) == 12


def test_a_budgeted_run_measures_then_keeps_its_schedule_on_resume(tmp_path):
    from dataclasses import replace

    from models.loop import resumed_plan
    from models.train_encoder import PROFILES, train_encoder

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 80, 60, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 40)
    prof = replace(PROFILES["tiny"], epochs=40, budget_seconds=0.5, min_epochs=2)
    payload = train_encoder(images[:32], labels[:32], images[32:], labels[32:], list("abcd"), tmp_path / "e.pt",
                            profile=prof, show_progress=False)
    chosen = payload["train"]["profile"]["epochs"]
    assert 2 <= chosen < 40 and len(payload["train"]["history"]) == chosen
    assert payload["train"]["measured_epoch_seconds"] > 0
    assert resumed_plan(tmp_path / "e.pt", {"profile": {}}) is None  # no partial file: measure afresh


def test_a_longer_run_shows_people_s_drawings_as_often_in_all_as_pool_epochs_would():
    """The cpu profile's pool share: 3 % up to 8 epochs, then falling, so that the drawings are shown as often in
    all; the drawn prior follows the share the run used."""
    from dataclasses import replace

    from models import train_encoder as te

    cpu = te.PROFILES["cpu"]
    assert te.pool_share(replace(cpu, epochs=7)) == te.pool_share(replace(cpu, epochs=8)) == 0.03
    for epochs in (10, 22, 30):
        share = te.pool_share(replace(cpu, epochs=epochs))
        assert share < 0.03
        assert share * epochs == pytest.approx(0.03 * 8)
    assert te.pool_share(replace(cpu, epochs=22, pool_epochs=None)) == 0.03  # no pool_epochs: the share as given
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    pool = np.ones(40, np.int64)
    long_run = replace(cpu, epochs=22)
    as_given = replace(cpu, epochs=22, pool_epochs=None, pool_fraction=te.pool_share(long_run))
    assert te.drawn_prior_ratio(labels, pool, 3, long_run) == te.drawn_prior_ratio(labels, pool, 3, as_given)


def test_the_drawn_prior_ratio_undoes_the_pool_s_kinds_and_a_sketch_query_s_guess_takes_it():
    from dataclasses import replace

    from models import train_encoder as te
    from search.trained import Image2Vec

    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    prof = replace(te.PROFILES["tiny"], sketch_fraction=0.5, pool_fraction=0.1)
    assert te.drawn_prior_ratio(labels, None, 3, prof) == [1.0, 1.0, 1.0]
    ratio = np.array(te.drawn_prior_ratio(labels, np.ones(40, np.int64), 3, prof))
    catalog = np.array([0.6, 0.3, 0.1])
    synthetic = 0.5 * 0.9
    drawn = (synthetic * catalog + 0.1 * np.array([0.0, 1.0, 0.0])) / (synthetic + 0.1)
    np.testing.assert_allclose(drawn * ratio, catalog)  # the drawings' mix, corrected, is the catalog's
    assert ratio[1] < 1 < ratio[0]

    torch.manual_seed(0)
    model = ImageEncoder(EncoderConfig(widths=(8, 16), embed_dim=8, n_classes=3, class_names=["a", "b", "c"]))
    encoder = Image2Vec(model.eval(), {"config": model.config.to_dict(), "train": {"drawn_prior_ratio": list(ratio)}})
    vectors = torch.nn.functional.normalize(torch.randn(4, 8), dim=1).numpy()
    plain, corrected = encoder.category_probs(vectors), encoder.category_probs(vectors, drawn=True)
    np.testing.assert_allclose(corrected.sum(axis=1), 1.0, rtol=1e-5)
    expected = plain * ratio / (plain * ratio).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(corrected, expected, rtol=1e-5)
    assert (corrected[:, 1] < plain[:, 1]).all()


def test_in_eval_mode_turns_off_a_training_module_anywhere_and_leaves_a_served_one_alone():
    from models.training import in_eval_mode

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Dropout(0.5)))
    in_eval_mode(net)
    assert not any(m.training for m in net.modules())
    net[1][0].train()  # one submodule left training: the dropout must still be turned off
    in_eval_mode(net)
    assert not any(m.training for m in net.modules())
    x = torch.ones(4, 2)
    assert torch.equal(net(x), net(x))


def test_the_serving_form_folds_batchnorm_and_keeps_the_outputs():
    from models.training import for_serving

    model = ImageEncoder(EncoderConfig(widths=(8, 16, 16, 32), embed_dim=24, n_classes=5))
    with torch.no_grad():  # BatchNorms with statistics and affine weights of their own, not the defaults
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 80, 60, 3), dtype=np.uint8)
    before = embed_array(model, images, torch.device("cpu"), flip_average=True)
    served = for_serving(model)
    after = embed_array(served, images, torch.device("cpu"), flip_average=True)  # bf16 weights where bf16 infers
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules())
    assert (before * after).sum(axis=1).min() > 0.999
