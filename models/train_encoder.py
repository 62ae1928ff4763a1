"""Training loop for Image2Vec (``models.image_encoder``).

Inputs are plain arrays so the loop runs anywhere (CPU here, CUDA on a GPU box):
photos as uint8 (N, 80, 60, 3), integer articleType labels and, optionally,
one edge-map sketch per photo as uint8 (N, 80, 60), or several as (V, N, 80, 60).
With sketches, a fraction of every batch is shown as a sketch of the same item
(one of its V drawings at random), which teaches the encoder the direct
sketch -> vector road.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.image_encoder import EncoderConfig, ImageEncoder
from models.loop import Profile, adamw_one_cycle, finish, fit, measure_epoch_seconds, plan_epochs
from models.metrics import precision_at_k
from models.quantize import calibration_set
from models.training import (
    augment_images,
    autocast_for,
    cpu_has_bf16,
    for_inference,
    in_eval_mode,
    inference_batch,
    inference_precision,
    pick_device,
    seed_everything,
    to_float_images,
)


@dataclass
class EncoderProfile(Profile):
    label_smoothing: float = 0.1
    sketch_fraction: float = 0.35
    sketch_variants: int = 1  # drawings made of each train photo (search.train draws them)
    distort_fraction: float = 0.0  # share of sketches bent out of the photo's geometry (``distort_sketches``)
    pool_fraction: float = 0.0  # share of every batch given to people's drawings, when a pool is passed
    pool_epochs: float | None = None  # a longer run shows them as often in all as this many epochs (``pool_share``)
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: int = 1
    stem_stride: int = 2
    keep_best: bool = False  # save the epoch with the best validation P@5, not the last
    min_epochs: int = 3  # of a budgeted profile (``models.loop.plan_epochs``)
    embed_dim: int = 128


PROFILES = {
    # ~2.5 minutes on 2 CPU cores: enough for a demo that finds the right kind of thing. Three epochs, not one:
    # validation photo P@5 0.59 -> 0.68 for about 75 s more.
    "quick": EncoderProfile("quick", epochs=3, batch_size=96, max_train_items=16000, widths=(24, 48, 96, 192),
                            pool_fraction=0.03),
    # What `make train` uses without a GPU: the encoder's share of an hour on 2 CPU cores, 25 minutes. Two cores
    # differ: AVX2 alone (fp32, ~1 s a batch) fits 5 epochs; avx512_bf16 (bf16 autocast) 13 at ~112 s an epoch,
    # and the fastest cores measured (~50 s an epoch) reach the cap of 30.
    # The pool's share falls past 8 epochs (``pool_share``): 0.03 for the 7 epochs of AVX2 cores, 0.011 for 22.
    "cpu": EncoderProfile("cpu", epochs=30, batch_size=128, sketch_fraction=0.5, distort_fraction=0.5,
                          pool_fraction=0.03, pool_epochs=8, keep_best=True, budget_seconds=1500),
    # The profile the quality targets are measured on (GPU: minutes; 2 CPU cores: hours).
    "full": EncoderProfile("full", epochs=100, batch_size=256, lr=4e-3, widths=(24, 40, 80, 160, 320), blocks=2,
                           stem_stride=1, keep_best=True),
    # For tests: a few seconds.
    "tiny": EncoderProfile("tiny", epochs=6, batch_size=8, widths=(8, 16, 16, 32), embed_dim=32, lr=5e-3),
}


def pool_share(prof: EncoderProfile) -> float:
    """The share of every batch given to people's drawings in a run of ``prof.epochs``: ``pool_fraction``, scaled
    down in a run longer than ``pool_epochs`` so that the drawings are shown as often in all as in that many.

    The pool has drawings of four kinds only. The longer an encoder sees them among synthetic sketches, the more it
    learns that a drawing in their style is one of those four: at 22 epochs and 3 %, the kinds the pool does not
    show fell below the same recipe without the pool (docs/drawings.md), where at 7-10 epochs they had not."""
    if prof.pool_epochs is None:
        return prof.pool_fraction
    return prof.pool_fraction * min(1.0, prof.pool_epochs / prof.epochs)


def drawn_prior_ratio(labels: np.ndarray, pool_labels: np.ndarray | None, n_classes: int,
                      prof: EncoderProfile) -> list[float]:
    """Per class, how much likelier the catalog makes it than the drawings the encoder trained on did:
    ``catalog share / share among the drawn training inputs``.

    The drawn inputs are the synthetic sketches (the catalog's mix of classes) and the pool of people's drawings,
    which shows a few kinds only: the cosine head learns that a drawing is one of those far more often than a
    shopper's drawing is. A sketch query's category guess is multiplied by this ratio (``search.trained``): the
    prior correction of a known label shift, from the training recipe alone.
    """
    labels = np.asarray(labels)
    catalog = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    catalog /= max(1.0, catalog.sum())
    share = pool_share(prof)
    if pool_labels is None or not len(pool_labels) or share <= 0:
        return [1.0] * n_classes
    pool = np.bincount(np.asarray(pool_labels), minlength=n_classes).astype(np.float64)
    pool /= pool.sum()
    synthetic = prof.sketch_fraction * (1.0 - share)
    drawn = (synthetic * catalog + share * pool) / (synthetic + share)
    return [float(c / d) if d > 0 else 1.0 for c, d in zip(catalog, drawn, strict=True)]


def training_subset(n_items: int, prof: EncoderProfile) -> np.ndarray:
    """Sorted indices of the train items a profile trains on (all, or ``max_train_items`` drawn by its seed)."""
    n = n_items if prof.max_train_items is None else min(prof.max_train_items, n_items)
    return np.sort(np.random.default_rng(prof.seed).permutation(n_items)[:n])


def sketch_batch(sketches_uint8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, H, W) uint8 sketches -> (N, 3, H, W) float, with random stroke thickening and erasing."""
    x = sketches_uint8.float().div(127.5).sub(1.0).unsqueeze(1)
    n = x.shape[0]
    thick = (torch.rand(n, generator=generator) < 0.35).to(x.device).view(n, 1, 1, 1)
    thicker = -F.max_pool2d(-x, 3, stride=1, padding=1)  # dark strokes grow by one pixel
    x = torch.where(thick, thicker, x)
    # Erase a random rectangle of strokes in some sketches: people leave lines out.
    h, w = x.shape[2:]
    erase = (torch.rand(n, generator=generator) < 0.3).tolist()
    for i, e in enumerate(erase):
        if e:
            eh, ew = int(h * 0.3), int(w * 0.3)
            y0 = int(torch.randint(0, h - eh, (1,), generator=generator))
            x0 = int(torch.randint(0, w - ew, (1,), generator=generator))
            x[i, :, y0 : y0 + eh, x0 : x0 + ew] = 1.0
    return x.expand(-1, 3, -1, -1).contiguous()


def distort_sketches(x: torch.Tensor, generator: torch.Generator, *, rotate: float = 30.0, aspect: float = 2.0,
                     shear: float = 0.3) -> torch.Tensor:
    """Bend float sketches (N, C, H, W) in [-1, 1] out of the catalog photo's geometry, white fill.

    A person draws the icon of a thing, not the photo: taller or squatter than the product (up to ``aspect``
    times), tilted (up to ``rotate`` degrees) and skewed (``shear``). Edge maps of photos never vary so.
    """
    n = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = torch.deg2rad(uniform(-rotate, rotate))
    stretch = torch.exp(uniform(-np.log(aspect), np.log(aspect)) / 2)
    skew = uniform(-shear, shear)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * stretch
    theta[:, 0, 1] = -sin * stretch + skew
    theta[:, 1, 0] = sin / stretch
    theta[:, 1, 1] = cos / stretch
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1.0


@torch.no_grad()
def embed_array(model: ImageEncoder, images: np.ndarray | torch.Tensor, device: torch.device,
                batch_size: int | None = None, grayscale: bool = False, flip_average: bool = False) -> np.ndarray:
    """Embed uint8 photos (N, H, W, 3) or sketches (N, H, W) with ``grayscale=True``.

    ``flip_average``: the vector is the normalised mean of the image's and its mirror image's vectors
    (test-time augmentation; the catalog shoots items facing either way).
    """
    in_eval_mode(model)
    batch_size = batch_size or inference_batch(device, flip_average)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = torch.as_tensor(np.array(images[start : start + batch_size]))
        if grayscale:
            chunk = chunk.unsqueeze(-1).expand(-1, -1, -1, 3)
        x = to_float_images(chunk.to(device))
        with inference_precision(device):
            if flip_average:  # one forward pass over both views
                emb = model.embed(torch.cat([x, x.flip(3)])).float()
                emb = F.normalize(emb[: len(x)] + emb[len(x) :], dim=1)
            else:
                emb = model.embed(x)
        out.append(emb.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.embed_dim), np.float32)


def train_encoder(train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
                  val_labels: np.ndarray, class_names: list[str], out_path, *, profile: str | EncoderProfile = "quick",
                  device: str | None = None, train_sketches: np.ndarray | None = None,
                  val_sketches: np.ndarray | None = None, gallery: tuple[np.ndarray, np.ndarray] | None = None,
                  pool: tuple[np.ndarray, np.ndarray] | None = None, resume: bool = True,
                  show_progress: bool = True) -> dict:
    """Train, evaluate on the validation split each epoch, write the checkpoint; returns it.

    ``pool``: people's drawings (uint8 (M, 80, 60)) and their articleType labels; ``pool_share(profile)`` of
    every batch shows one of them in place of a photo.

    ``gallery`` (the other splits' images and labels) adds, after the last epoch,
    ``val_catalog_*`` figures: validation queries searched against the whole
    catalog, as the deployed index does.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    dev = pick_device(device)
    seed_everything(prof.seed)
    config = EncoderConfig(widths=prof.widths, blocks=prof.blocks, stem_stride=prof.stem_stride, embed_dim=prof.embed_dim, n_classes=len(class_names),
                           class_names=list(class_names))
    model = ImageEncoder(config).to(dev).to(memory_format=torch.channels_last)

    subset = training_subset(len(train_images), prof)
    n_train = len(subset)
    images = torch.from_numpy(np.ascontiguousarray(train_images[subset])).to(dev)
    labels = torch.from_numpy(np.asarray(train_labels)[subset].astype(np.int64)).to(dev)
    sketches = None
    if train_sketches is not None and prof.sketch_fraction > 0:
        train_sketches = np.asarray(train_sketches)
        if train_sketches.ndim == 3:  # one drawing per photo
            train_sketches = train_sketches[None]
        # (V, N, H, W): V drawings of every photo; each time a photo is shown as a sketch, one of them at random
        sketches = torch.from_numpy(np.ascontiguousarray(train_sketches[:, subset])).to(dev)
    pool_sketches = pool_labels = None
    if pool is not None and len(pool[0]) and prof.pool_fraction > 0:
        pool_sketches = torch.from_numpy(np.ascontiguousarray(pool[0])).to(dev)
        pool_labels = torch.from_numpy(np.asarray(pool[1], dtype=np.int64)).to(dev)

    steps_per_epoch = max(1, n_train // prof.batch_size)
    autocast = autocast_for(dev)

    def step(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A batch of photos, some shown as one of their sketches, some replaced by people's drawings."""
        x, y = to_float_images(images[idx]), labels[idx]
        drawn = torch.zeros(len(idx), dtype=torch.bool, device=dev)
        if sketches is not None:
            drawn = torch.rand(len(idx), generator=gen).to(dev) < prof.sketch_fraction
            if drawn.any():
                variant = torch.randint(0, sketches.shape[0], (len(idx),), generator=gen).to(dev)
                x[drawn] = sketch_batch(sketches[variant[drawn], idx[drawn]], gen)
        if pool_sketches is not None:
            human = torch.rand(len(idx), generator=gen).to(dev) < pool_share(prof)  # prof: as planned
            if human.any():
                pick = torch.randint(0, len(pool_sketches), (int(human.sum()),), generator=gen).to(dev)
                x[human] = sketch_batch(pool_sketches[pick], gen)
                y = y.clone()
                y[human] = pool_labels[pick]
                drawn = drawn | human
        if prof.distort_fraction > 0 and drawn.any():
            bend = drawn & (torch.rand(len(idx), generator=gen).to(dev) < prof.distort_fraction)
            if bend.any():
                x[bend] = distort_sketches(x[bend], gen)
        x = augment_images(x, gen).contiguous(memory_format=torch.channels_last)
        with autocast:
            emb = model.embed(x)
            logits = model.logits(emb.float(), y)
            return F.cross_entropy(logits, y, label_smoothing=prof.label_smoothing)

    def signature_of(p: EncoderProfile) -> dict:
        return {"profile": asdict(p), "config": config.to_dict(), "n_train": n_train,
                "n_pool": 0 if pool_sketches is None else len(pool_sketches)}

    def evaluate_seconds() -> float:  # validation timed on a slice, scaled to the split
        n = min(256, len(val_images))
        start = time.perf_counter()
        evaluate_encoder(model, val_images[:n], val_labels[:n], dev, None if val_sketches is None else val_sketches[:n])
        return (time.perf_counter() - start) * len(val_images) / max(1, n)

    prof, epoch_seconds = plan_epochs(
        "encoder", prof, out_path, signature_of, resume=resume, show_progress=show_progress,
        measure=lambda: measure_epoch_seconds(step, n_train, prof.batch_size, dev, {"model": model},
                                              evaluate_seconds))
    signature = signature_of(prof)
    optimizer, scheduler = adamw_one_cycle(model, prof, steps_per_epoch)
    fitted = fit("encoder", model, optimizer, scheduler, out_path=out_path, signature=signature, epochs=prof.epochs,
                 n_items=n_train, batch_size=prof.batch_size, seed=prof.seed, step=step, device=dev,
                 evaluate=lambda: evaluate_encoder(model, val_images, val_labels, dev, val_sketches),
                 best_key="val_p_at_5" if prof.keep_best else None, resume=resume, show_progress=show_progress)
    final = dict(fitted.metrics)
    if gallery is not None:
        final.update(catalog_metrics(model, val_images, val_labels, gallery, dev, val_sketches))
        if show_progress:
            tqdm.write("catalog gallery: " + " ".join(f"{k} {v:.3f}" for k, v in final.items() if "catalog" in k))
    payload = save_checkpoint(
        out_path, kind="encoder", config=config.to_dict(), model=model.cpu(),
        metrics={k: v for k, v in final.items() if k.startswith("val_")},
        train=fitted.train_info(profile=asdict(prof), device=str(dev), n_train=n_train, n_pool=signature["n_pool"],
                                drawn_prior_ratio=drawn_prior_ratio(
                                    labels.cpu().numpy(), None if pool_labels is None else pool_labels.cpu().numpy(),
                                    len(class_names), prof),
                                bf16=dev.type == "cuda" or cpu_has_bf16(), measured_epoch_seconds=epoch_seconds),
        extra={"calibration": torch.from_numpy(calibration_set(val_images, val_sketches))},  # models.quantize
    )
    finish(out_path)
    return payload


def evaluate_encoder(model: ImageEncoder, images: np.ndarray, labels: np.ndarray, device: torch.device,
                     sketches: np.ndarray | None = None) -> dict[str, float]:
    vecs = embed_array(model, images, device)
    labels = np.asarray(labels, dtype=np.int64)
    with torch.no_grad():
        logits = model.logits(torch.from_numpy(vecs).to(device)).cpu()
    metrics = {
        "val_accuracy": float((logits.argmax(1).numpy() == labels).mean()) if len(labels) else float("nan"),
        "val_p_at_5": precision_at_k(vecs, labels, vecs, labels, k=5, exclude_self=True),
    }
    if sketches is not None:
        svecs = embed_array(model, sketches, device, grayscale=True)
        metrics["val_sketch_p_at_5"] = precision_at_k(svecs, labels, vecs, labels, k=5, exclude_self=True)
    return metrics


def catalog_metrics(model: ImageEncoder, val_images: np.ndarray, val_labels: np.ndarray,
                    gallery: tuple[np.ndarray, np.ndarray], device: torch.device,
                    val_sketches: np.ndarray | None = None) -> dict[str, float]:
    """Val queries (photo, and sketch when given) against val + gallery items, the query item excluded."""
    labels = np.asarray(val_labels, dtype=np.int64)
    qv = embed_array(model, val_images, device)
    gv = np.concatenate([qv, embed_array(model, gallery[0], device)])
    gl = np.concatenate([labels, np.asarray(gallery[1], dtype=np.int64)])
    out = {f"val_catalog_p_at_{k}": precision_at_k(qv, labels, gv, gl, k=k, exclude_self=True) for k in (5, 10)}
    if val_sketches is not None:
        sv = embed_array(model, val_sketches, device, grayscale=True)
        out["val_catalog_sketch_p_at_5"] = precision_at_k(sv, labels, gv, gl, k=5, exclude_self=True)
    return out


def load_encoder(payload: dict, device: str | torch.device = "cpu") -> ImageEncoder:
    model = ImageEncoder(EncoderConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return for_inference(model, device)
