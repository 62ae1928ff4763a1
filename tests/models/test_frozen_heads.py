"""One backbone, trained once: the classifiers and the captioner learn only heads on Image2Vec's frozen CNN,
read its descriptors (cached per encoder version), and rebuild from their own checkpoint file alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.train_captioner as tcap
import models.train_classifier as tc
from models.captioner import generate_captions, load_captioner
from models.checkpoint import add_train_info, load_checkpoint
from models.classifier import MAIN_HEAD, class_activation_map, load_classifier, predict
from models.image_encoder import describe_array, head_probs_of_descriptors, vectors_of_descriptors
from models.metrics import nearest
from models.train_encoder import load_encoder, train_encoder
from tests.models.test_classifier import make_items


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    train_images, train_titles, train_rows = make_items(64, 0)
    val_images, val_titles, val_rows = make_items(16, 1)
    targets, names = tc.catalog_targets(train_rows)
    val_targets, _ = tc.catalog_targets(val_rows, names)
    labels = targets[MAIN_HEAD]
    encoder = train_encoder(train_images, labels, val_images, val_targets[MAIN_HEAD], names[MAIN_HEAD],
                            root / "encoder.pt", profile="tiny", device="cpu", show_progress=False)
    return root, encoder, (train_images, train_titles, targets, val_images, val_titles, val_targets, names)


def test_the_classifier_reads_the_frozen_encoder_and_rebuilds_from_its_file(setup):
    root, encoder, (ti, tt, tg, vi, vt, vg, names) = setup
    payload = tc.train_classifier(ti, tt, tg, vi, vt, vg, names, root / "fused.pt", use_text=True, profile="tiny",
                                  device="cpu", show_progress=False, encoder=encoder)
    assert payload["config"]["frozen_encoder"] == encoder["version"]
    assert payload["config"]["widths"] == list(encoder["config"]["widths"])
    # the CNN is the encoder's, untouched by training the heads
    for key, value in encoder["model"].items():
        if key.startswith("features."):
            assert torch.equal(payload["model"][key], value), key
    model = load_classifier(load_checkpoint(root / "fused.pt", "classifier"))  # the file alone
    from_images = predict(model, vi, vt)[MAIN_HEAD]
    descriptors = describe_array(load_encoder(encoder), vi)
    assert descriptors.shape == (1, len(vi), model.image_dim) and descriptors.dtype == np.float16
    from_descriptors = predict(model, None, vt, descriptors=descriptors[0])[MAIN_HEAD]
    np.testing.assert_allclose(from_images, from_descriptors, atol=2e-2)  # float16 descriptors
    # both views at once: the flip average without running the CNN again
    both = describe_array(load_encoder(encoder), vi, views=2)
    flipped = predict(model, vi, vt, flip_average=True)[MAIN_HEAD]
    np.testing.assert_allclose(predict(model, None, vt, descriptors=both)[MAIN_HEAD], flipped, atol=2e-2)
    assert payload["metrics"]["val_accuracy"] > 0.9  # colour boxes: three easy kinds
    cam = class_activation_map(model, vi[:2], MAIN_HEAD, 0)
    assert cam.shape == (2, 80, 60) and 0 <= cam.min() and cam.max() <= 1 + 1e-6


def test_the_twin_chooses_the_encoder_heads_weight_on_validation(setup):
    root, encoder, (ti, tt, tg, vi, vt, vg, names) = setup
    payload = tc.train_classifier(ti, tt, tg, vi, vt, vg, names, root / "twin.pt", use_text=False, profile="tiny",
                                  device="cpu", show_progress=False, encoder=encoder)
    sweep, weight = payload["train"]["encoder_head_sweep"], payload["train"]["encoder_head_weight"]
    assert set(sweep) == {str(w) for w in tc.HEAD_WEIGHTS} and weight in tc.HEAD_WEIGHTS
    assert sweep[str(weight)] == max(sweep.values())
    assert weight == min(w for w in tc.HEAD_WEIGHTS if sweep[str(w)] == sweep[str(weight)])  # the smallest of equals
    # the head read from the descriptors is the encoder's own head read from the photos
    net = load_encoder(encoder)
    with torch.no_grad():
        x = torch.from_numpy(vi).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        direct = net.logits(net.embed(x)).softmax(dim=1).numpy()
    np.testing.assert_allclose(head_probs_of_descriptors(encoder, describe_array(net, vi)[0]), direct, atol=2e-2)
    # a twin whose classes are not the encoder's carries no weight, and the search averages evenly
    other = {**encoder, "config": {**encoder["config"], "class_names": ["something", "else", "entirely"]}}
    assert tc.encoder_head_weight(load_classifier(payload), other, describe_array(net, vi)[0],
                                  np.asarray(vg[MAIN_HEAD])) == {}


def test_the_index_vectors_read_from_descriptors_are_the_encoders_own(setup):
    root, encoder, (_ti, _tt, _tg, vi, _vt, _vg, _names) = setup
    net = load_encoder(encoder)
    with torch.no_grad():  # embed's mirror average, from the photos
        x = torch.from_numpy(vi).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        direct = torch.nn.functional.normalize(net.embed(x) + net.embed(x.flip(3)), dim=1).numpy()
    from_descriptors = vectors_of_descriptors(encoder, describe_array(net, vi, views=2))
    np.testing.assert_allclose(from_descriptors, direct, atol=2e-2)
    indices, cosines = nearest(from_descriptors[:3], from_descriptors, 2)
    assert indices[:, 0].tolist() == [0, 1, 2] and np.allclose(cosines[:, 0], 1.0, atol=1e-5)
    assert (cosines[:, 0] >= cosines[:, 1]).all()


def test_a_setting_added_to_a_checkpoint_keeps_its_weights_and_version(setup):
    root, encoder, _ = setup
    path = root / "encoder-copy.pt"
    path.write_bytes((root / "encoder.pt").read_bytes())
    added = add_train_info(path, chosen=0.5)
    again = load_checkpoint(path, "encoder")
    assert again["train"]["chosen"] == 0.5 and again["version"] == encoder["version"] == added["version"]
    assert again["train"]["history"] == encoder["train"]["history"]
    assert all(torch.equal(again["model"][k], v) for k, v in encoder["model"].items())


def test_the_captioner_decodes_from_the_frozen_encoder(setup):
    root, encoder, (ti, tt, _tg, vi, vt, _vg, _names) = setup
    payload = tcap.train_captioner(ti, tt, vi, vt, root / "cap.pt", profile="tiny", device="cpu",
                                   show_progress=False, encoder=encoder)
    assert payload["config"]["frozen_encoder"] == encoder["version"]
    model = load_captioner(load_checkpoint(root / "cap.pt", "captioner"))
    drafts = generate_captions(model, vi[:4], beam_size=1)
    descriptors = describe_array(load_encoder(encoder), vi[:4])[0]
    assert generate_captions(model, None, beam_size=1, descriptors=descriptors) == drafts
    assert all(isinstance(d, str) for d in drafts)


def test_descriptors_are_cached_per_encoder_version(setup, tmp_path):
    from search.features import catalog_descriptors

    root, encoder, (ti, *_rest) = setup
    first = catalog_descriptors(encoder, ti, tmp_path, views=2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and encoder["version"] in files[0]
    assert np.array_equal(catalog_descriptors(encoder, ti, tmp_path, views=2), first)  # read back
    retrained = dict(encoder, version="encoder-retrained")
    retrained["model"] = {k: v + 0.5 if k.endswith("features.0.0.weight") else v for k, v in encoder["model"].items()}
    second = catalog_descriptors(retrained, ti, tmp_path, views=2)
    assert len(list(tmp_path.iterdir())) == 2 and not np.array_equal(second, first)
