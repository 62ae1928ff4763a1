"""Training loop for the caption drafter (``models.captioner``).

Teacher forcing with cross-entropy over the next word; photos augmented
(no flips: they would not change a title, but keep the pictures as shot).
Each epoch reports validation loss and greedy (fast) corpus BLEU-4 on up to
``val_bleu_items`` validation photos.

With ``encoder`` (an Image2Vec checkpoint) the decoder reads that frozen CNN's
descriptors (cached once per catalog by the caller, or computed here) and only
the decoder trains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.captioner import Captioner, CaptionerConfig, generate_captions
from models.checkpoint import save_checkpoint
from models.image_encoder import adopt_backbone, frozen_shape
from models.loop import Profile, adamw_one_cycle, finish, fit, measure_epoch_seconds, plan_epochs, seconds_of
from models.metrics import bleu4
from models.training import (
    augment_images,
    autocast_for,
    pick_device,
    seed_everything,
    to_float_images,
)
from models.vocab import PAD, Vocab


@dataclass
class CaptionerProfile(Profile):
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    widths: tuple[int, ...] = (32, 64, 128, 256)
    hidden: int = 256
    word_dim: int = 128
    min_word_count: int = 3
    val_bleu_items: int = 1000


PROFILES = {
    # ~2.5 minutes on 2 CPU cores.
    "quick": CaptionerProfile("quick", epochs=3, batch_size=96, max_train_items=10000, widths=(16, 32, 64, 128),
                              hidden=192, word_dim=96),
    # One H100: about a minute.
    "full": CaptionerProfile("full", epochs=20, batch_size=256, lr=3e-3, widths=(32, 64, 128, 256)),
    # What `make train` uses without a GPU: the decoder on the frozen Image2Vec (search.train passes it), as many
    # of 10 epochs as fit in 6 minutes (AVX2-only cores ran 10 in 17 minutes, to BLEU-4 0.110, which the
    # neighbour's title ties: the served draft is the better of the two, so the captioner gets a small share).
    "cpu": CaptionerProfile("cpu", epochs=10, batch_size=256, lr=3e-3, hidden=256, word_dim=128,
                            budget_seconds=360, min_epochs=1),  # the last of `make train`: squeezed on slow cores
    # For tests: a few seconds.
    "tiny": CaptionerProfile("tiny", epochs=2, batch_size=16, widths=(8, 8, 16, 16), hidden=32, word_dim=16,
                             min_word_count=1, lr=5e-3, val_bleu_items=50),
}


def train_captioner(train_images: np.ndarray, train_titles: list[str], val_images: np.ndarray,
                    val_titles: list[str], out_path, *, profile: str | CaptionerProfile = "quick",
                    device: str | None = None, resume: bool = True, show_progress: bool = True,
                    encoder: dict | None = None, train_descriptors: np.ndarray | None = None,
                    val_descriptors: np.ndarray | None = None) -> dict:
    """Train, evaluate on the validation split each epoch, write the checkpoint (kind "captioner"); returns it.

    ``encoder``: decode from that Image2Vec's frozen CNN (its shape, not the profile's widths), reading
    ``train_descriptors`` / ``val_descriptors`` ((views, N, D), the caller's cache) when given."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    dev = pick_device(device)
    seed_everything(prof.seed)

    n_train = len(train_images) if prof.max_train_items is None else min(prof.max_train_items, len(train_images))
    rng = np.random.default_rng(prof.seed)
    subset = np.sort(rng.permutation(len(train_images))[:n_train])
    titles = [train_titles[i] for i in subset]
    vocab = Vocab.build(titles, "title", min_count=prof.min_word_count)
    shape: dict = {"widths": prof.widths}
    if encoder is not None:
        shape = frozen_shape(encoder)
    config = CaptionerConfig(vocab=vocab.to_dict(), word_dim=prof.word_dim, hidden=prof.hidden,
                             frozen_encoder=encoder["version"] if encoder is not None else "", **shape)
    model = Captioner(config).to(dev)
    if dev.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    descriptors = images = None
    if encoder is not None:
        train_descriptors, val_descriptors = adopt_backbone(model, encoder, train_images, val_images, dev, 1,
                                                            train_descriptors, val_descriptors)
        # the photo as shot only (a mirror image would not change the title, but it is not what was shot)
        descriptors = torch.from_numpy(np.ascontiguousarray(np.asarray(train_descriptors)[0, subset])).to(dev)
        val_descriptors = np.asarray(val_descriptors)[0]
    else:
        images = torch.from_numpy(np.ascontiguousarray(train_images[subset])).to(dev)
    tokens = vocab.encode_batch(titles, config.max_len + 1, bos=True, eos=True).to(dev)  # input + shifted target
    val_tokens = vocab.encode_batch(list(val_titles), config.max_len + 1, bos=True, eos=True)

    steps_per_epoch = max(1, n_train // prof.batch_size)
    autocast = autocast_for(dev)

    def step(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if descriptors is not None:
            x = descriptors[idx].float()
        else:
            x = augment_images(to_float_images(images[idx]), gen, flip=False)
            if dev.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
        tok = tokens[idx]
        with autocast:
            logits = model(x, tok[:, :-1], pooled=descriptors is not None)
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1),
                                   ignore_index=PAD, label_smoothing=prof.label_smoothing)

    def evaluate() -> dict[str, float]:
        return evaluate_captioner(model, val_images, val_titles, val_tokens, prof.val_bleu_items,
                                  descriptors=val_descriptors)

    def signature_of(p: CaptionerProfile) -> dict:
        return {"profile": asdict(p), "config": config.to_dict(), "n_train": n_train}

    prof, epoch_seconds = plan_epochs(
        "captioner", prof, out_path, signature_of, resume=resume, show_progress=show_progress,
        measure=lambda: measure_epoch_seconds(step, n_train, prof.batch_size, dev, {"model": model},
                                              lambda: seconds_of(evaluate)))
    optimizer, scheduler = adamw_one_cycle(model, prof, steps_per_epoch)
    fitted = fit("captioner", model, optimizer, scheduler, out_path=out_path, signature=signature_of(prof),
                 epochs=prof.epochs, n_items=n_train, batch_size=prof.batch_size, seed=prof.seed, step=step,
                 device=dev, clip_norm=5.0, resume=resume, show_progress=show_progress, evaluate=evaluate)
    payload = save_checkpoint(
        out_path, kind="captioner", config=config.to_dict(), model=model.cpu(), metrics=fitted.metrics,
        train=fitted.train_info(profile=asdict(prof), device=str(dev), n_train=n_train,
                                measured_epoch_seconds=epoch_seconds),
    )
    finish(out_path)
    return payload


@torch.no_grad()
def evaluate_captioner(model: Captioner, images: np.ndarray, titles: list[str], tokens: torch.Tensor,
                       bleu_items: int, batch_size: int = 512, descriptors: np.ndarray | None = None) -> dict[str, float]:
    """Teacher-forced loss on the whole split and greedy BLEU-4 on its first ``bleu_items`` photos
    (from ``descriptors`` of them when given)."""
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    source = descriptors if descriptors is not None else images
    for start in range(0, len(source), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(source[start : start + batch_size])).to(dev)
        x = chunk.float() if descriptors is not None else to_float_images(chunk)
        tok = tokens[start : start + batch_size].to(dev)
        logits = model(x, tok[:, :-1], pooled=descriptors is not None)
        target = tok[:, 1:].reshape(-1)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target, ignore_index=PAD,
                                 reduction="sum").item()
        count += int((target != PAD).sum())
    n = min(bleu_items, len(source))
    hyps = (generate_captions(model, None, beam_size=1, descriptors=descriptors[:n]) if descriptors is not None
            else generate_captions(model, images[:n], beam_size=1))
    return {"val_loss": total / max(1, count), "val_bleu4": bleu4(hyps, list(titles[:n])) if n else float("nan")}
