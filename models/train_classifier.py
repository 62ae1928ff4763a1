"""Training loop for the fused classifier and its image-only twin (``models.classifier``).

Inputs are plain arrays: photos as uint8 (N, 80, 60, 3), titles as strings and
one integer target array per head (``-1``: unknown, left out of loss and
accuracy). ``catalog_targets`` builds the targets from catalog rows.

Tricks: flips/shift/zoom/colour jitter on the photos, label smoothing, word
dropout on titles, and modality dropout (a share of items is shown without
its title) so the fused model still works, image-only, when a title is missing.

With ``encoder`` (an Image2Vec checkpoint) only the heads train, on the frozen
CNN's descriptors of each photo and of its mirror image (``train_descriptors``,
computed once per catalog by the caller, or here): seconds per epoch on a CPU
instead of minutes, and the CNN is trained once, by Image2Vec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoint import save_checkpoint
from models.classifier import MAIN_HEAD, ClassifierConfig, FusedClassifier, predict
from models.image_encoder import adopt_backbone, frozen_shape, head_probs_of_descriptors
from models.loop import Profile, adamw_one_cycle, finish, fit, measure_epoch_seconds, plan_epochs, seconds_of
from models.training import (
    augment_images,
    autocast_for,
    pick_device,
    seed_everything,
    to_float_images,
)
from models.vocab import PAD, UNK, Vocab

EXTRA_HEADS = ("sub_category", "gender", "colour")  # CatalogRow attribute names
# The weights of Image2Vec's own head tried beside the image-only twin (``encoder_head_weight``).
HEAD_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class ClassifierProfile(Profile):
    label_smoothing: float = 0.1
    extra_heads: tuple[str, ...] = EXTRA_HEADS
    extra_weight: float = 0.3  # loss weight of each extra head (articleType: 1)
    cam_weight: float = 0.5  # loss weight of the linear CAM heads, relative to their head
    title_dropout: float = 0.3  # share of items trained without their title
    word_dropout: float = 0.1  # share of words replaced by <unk>
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: int = 1
    stem_stride: int = 2
    keep_best: bool = False  # save the epoch with the best validation articleType accuracy, not the last
    min_word_count: int = 2


PROFILES = {
    # ~2.5 minutes on 2 CPU cores per model.
    "quick": ClassifierProfile("quick", epochs=2, batch_size=96, max_train_items=8000, widths=(16, 32, 64, 128)),
    # The profile the quality targets are measured on (one H100: about a minute per model).
    "full": ClassifierProfile("full", epochs=60, batch_size=256, lr=4e-3, widths=(24, 40, 80, 160, 320), blocks=2,
                              stem_stride=1, keep_best=True),
    # For tests: a few seconds.
    "tiny": ClassifierProfile("tiny", epochs=2, batch_size=16, widths=(8, 8, 16, 16), lr=5e-3, min_word_count=1),
    # What `make train` uses without a GPU: heads on the frozen Image2Vec (search.train passes it), all the photos.
    # 24 epochs, not 12: validation accuracy fused 0.967 -> 0.973, image-only 0.875 -> 0.880, for about a minute
    # more on 2 cores (docs/training.md); the fused model was still rising at 12. Budgeted, as every cpu-profile
    # model is: on AVX-512 cores the 24 epochs take 123 s (fused) and 33 s; on the slowest AVX2 cores met, 350 s
    # and 117 s, which took `make train` past its hour (docs/training.md). Never under 12 (fused: 0.965 at 8).
    "cpu": ClassifierProfile("cpu", epochs=24, batch_size=256, lr=3e-3, keep_best=True, budget_seconds=150,
                             min_epochs=12),
}


def catalog_targets(rows, label_names: dict[str, list[str]] | None = None,
                    heads: tuple[str, ...] = (MAIN_HEAD, *EXTRA_HEADS),
                    ) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Targets from catalog rows (anything with ``.category``, ``.sub_category``, ``.gender``, ``.colour``).

    Without ``label_names`` the class names are the sorted non-empty values of
    these rows (use the training rows); values not in the names become -1.
    """
    if label_names is None:
        label_names = {h: sorted({getattr(r, h) for r in rows if getattr(r, h)}) for h in heads}
    targets = {}
    for h, names in label_names.items():
        index = {n: i for i, n in enumerate(names)}
        targets[h] = np.array([index.get(getattr(r, h), -1) for r in rows], dtype=np.int64)
    return targets, label_names


def train_classifier(train_images: np.ndarray, train_titles: list[str], train_targets: dict[str, np.ndarray],
                     val_images: np.ndarray, val_titles: list[str], val_targets: dict[str, np.ndarray],
                     label_names: dict[str, list[str]], out_path, *, use_text: bool,
                     profile: str | ClassifierProfile = "quick", device: str | None = None, resume: bool = True,
                     show_progress: bool = True, encoder: dict | None = None,
                     train_descriptors: np.ndarray | None = None,
                     val_descriptors: np.ndarray | None = None) -> dict:
    """Train, evaluate on the validation split each epoch, write the checkpoint (kind "classifier"); returns it.

    ``encoder``: heads on that Image2Vec's frozen CNN (its widths, not the profile's); ``train_descriptors`` /
    ``val_descriptors``: its descriptors of the photos, (views, N, D), when the caller has them cached."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    if MAIN_HEAD not in label_names or MAIN_HEAD not in train_targets:
        raise ValueError(f"the {MAIN_HEAD!r} (articleType) head is required")
    heads = [MAIN_HEAD] + [h for h in prof.extra_heads if h in label_names and h in train_targets]
    dev = pick_device(device)
    seed_everything(prof.seed)

    n_train = len(train_images) if prof.max_train_items is None else min(prof.max_train_items, len(train_images))
    rng = np.random.default_rng(prof.seed)
    subset = np.sort(rng.permutation(len(train_images))[:n_train])
    vocab = Vocab.build([train_titles[i] for i in subset], "words", min_count=prof.min_word_count) if use_text else None
    shape = dict(widths=prof.widths, blocks=prof.blocks, stem_stride=prof.stem_stride)
    if encoder is not None:
        shape = frozen_shape(encoder)
    config = ClassifierConfig(label_names={h: list(label_names[h]) for h in heads}, use_text=use_text,
                              vocab=vocab.to_dict() if vocab else None,
                              frozen_encoder=encoder["version"] if encoder is not None else "", **shape)
    model = FusedClassifier(config).to(dev).to(memory_format=torch.channels_last)
    descriptors = None
    if encoder is not None:
        train_descriptors, val_descriptors = adopt_backbone(model, encoder, train_images, val_images, dev, 2,
                                                            train_descriptors, val_descriptors)
        descriptors = torch.from_numpy(np.ascontiguousarray(train_descriptors[:, subset])).to(dev)
        val_descriptors = val_descriptors[0]
        images = None
    else:
        images = torch.from_numpy(np.ascontiguousarray(train_images[subset])).to(dev)
    targets = {h: torch.from_numpy(np.asarray(train_targets[h])[subset].astype(np.int64)).to(dev) for h in heads}
    tokens = model.encode_titles([train_titles[i] for i in subset], n_train).to(dev) if use_text else None

    steps_per_epoch = max(1, n_train // prof.batch_size)
    autocast = autocast_for(dev)
    weights = {h: (1.0 if h == MAIN_HEAD else prof.extra_weight) for h in heads}

    def step(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if descriptors is not None:  # one of the two views (the photo, its mirror image) of each item
            view = torch.randint(0, descriptors.shape[0], (len(idx),), generator=gen).to(dev)
            x = descriptors[view, idx].float()
        else:
            x = augment_images(to_float_images(images[idx]), gen).contiguous(memory_format=torch.channels_last)
        tok, present = None, None
        if use_text:
            tok = tokens[idx]
            drop = (torch.rand(tok.shape, generator=gen).to(dev) < prof.word_dropout) & (tok != PAD)
            tok = torch.where(drop, torch.full_like(tok, UNK), tok)
            present = (torch.rand(len(idx), generator=gen).to(dev) >= prof.title_dropout) & (tok != PAD).any(1)
        with autocast:
            fused, cam = model.from_pooled(x, tok, present) if descriptors is not None else model(x, tok, present)
            return sum(weights[h] * (F.cross_entropy(fused[h].float(), targets[h][idx], ignore_index=-1,
                                                     label_smoothing=prof.label_smoothing)
                                     + prof.cam_weight * F.cross_entropy(cam[h].float(), targets[h][idx],
                                                                         ignore_index=-1,
                                                                         label_smoothing=prof.label_smoothing))
                       for h in heads)

    def evaluate() -> dict[str, float]:
        return evaluate_classifier(model, val_images, val_titles, val_targets, descriptors=val_descriptors)

    def signature_of(p: ClassifierProfile) -> dict:
        return {"profile": asdict(p), "config": config.to_dict(), "n_train": n_train}

    name = f"classifier ({'fused' if use_text else 'image-only'})"
    prof, epoch_seconds = plan_epochs(
        name, prof, out_path, signature_of, resume=resume, show_progress=show_progress,
        measure=lambda: measure_epoch_seconds(step, n_train, prof.batch_size, dev, {"model": model},
                                              lambda: seconds_of(evaluate)))
    optimizer, scheduler = adamw_one_cycle(model, prof, steps_per_epoch)
    fitted = fit(name, model, optimizer, scheduler, out_path=out_path, signature=signature_of(prof),
                 epochs=prof.epochs, n_items=n_train, batch_size=prof.batch_size, seed=prof.seed, step=step,
                 device=dev, evaluate=evaluate, best_key="val_accuracy" if prof.keep_best else None, resume=resume,
                 show_progress=show_progress)
    blend = {}
    if encoder is not None and not use_text:  # the twin: how much of the encoder's own head to average in
        blend = encoder_head_weight(model, encoder, val_descriptors, np.asarray(val_targets[MAIN_HEAD]))
    payload = save_checkpoint(
        out_path, kind="classifier", config=config.to_dict(), model=model.cpu(), metrics=fitted.metrics,
        train=fitted.train_info(profile=asdict(prof), device=str(dev), n_train=n_train,
                                measured_epoch_seconds=epoch_seconds, **blend),
    )
    finish(out_path)
    return payload


def encoder_head_weight(twin: FusedClassifier, encoder: dict, val_descriptors: np.ndarray,
                        labels: np.ndarray) -> dict:
    """The weight of Image2Vec's own head in a photo's category guess (``search.categories.picture_categories``:
    ``w`` x the head + (1 - ``w``) x this image-only twin), chosen among ``HEAD_WEIGHTS`` by validation accuracy
    (the smallest of equals). The two read the same frozen CNN, and which one to trust depends on how long the
    encoder trained: on 2 AVX2 cores (8 encoder epochs, head 0.822) the even average of earlier code fell from the
    twin's 0.870 to 0.849 on validation (docs/experiments.md). Empty when the two know different classes."""
    if list(twin.config.label_names[MAIN_HEAD]) != list(encoder["config"].get("class_names") or []):
        return {}
    twin_probs = predict(twin, None, None, descriptors=val_descriptors)[MAIN_HEAD]
    head = head_probs_of_descriptors(encoder, val_descriptors)
    sweep = {str(w): _accuracy(w * head + (1.0 - w) * twin_probs, labels) for w in HEAD_WEIGHTS}
    best = max(HEAD_WEIGHTS, key=lambda w: (sweep[str(w)], -w))
    return {"encoder_head_weight": best, "encoder_head_sweep": sweep}


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    known = labels >= 0
    return float((probs[known].argmax(1) == labels[known]).mean()) if known.any() else float("nan")


@torch.no_grad()
def evaluate_classifier(model: FusedClassifier, images: np.ndarray, titles: list[str] | None,
                        targets: dict[str, np.ndarray], batch_size: int = 512,
                        descriptors: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy of every head (``val_accuracy`` is articleType), with titles and, for the fused model, without.

    ``val_cam_accuracy`` is the articleType accuracy of the linear CAM head on the image alone.
    """
    model.eval()
    dev = next(model.parameters()).device
    if descriptors is None:  # one pass of the CNN over the split; both title settings and the CAM head reuse it
        chunks = [model.pool(to_float_images(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
                                             .to(dev))).float().cpu() for i in range(0, len(images), batch_size)]
        descriptors = torch.cat(chunks).numpy() if chunks else np.zeros((0, model.image_dim), np.float32)
    metrics: dict[str, float] = {}
    probs = predict(model, None, titles, batch_size, descriptors=descriptors)
    for h in model.head_names:
        if h in targets:
            key = "val_accuracy" if h == MAIN_HEAD else f"val_{h}_accuracy"
            metrics[key] = _accuracy(probs[h], np.asarray(targets[h]))
    labels = np.asarray(targets[MAIN_HEAD])
    if model.config.use_text:
        blind = predict(model, None, None, batch_size, descriptors=descriptors)[MAIN_HEAD]
        metrics["val_accuracy_no_title"] = _accuracy(blind, labels)
    pooled = torch.from_numpy(np.asarray(descriptors, np.float32))[:, model.cam_slice].to(dev)
    metrics["val_cam_accuracy"] = _accuracy(model.cam_heads[MAIN_HEAD](pooled).float().cpu().numpy(), labels)
    return metrics