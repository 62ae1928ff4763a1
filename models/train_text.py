"""Training loop for text search: catalog titles <-> photos in one vector space.

Two spaces are supported (the profile's ``space``):

* ``"joint"`` (the default, and what the targets are measured on): a trainable
  ``ImageHead`` reads a fixed descriptor of the frozen Image2Vec feature map and
  the photo's colours; text and photos meet in a new ``embed_dim`` space, which
  needs its own index of image vectors.
  With ``tower="finetune"`` the photo side is a copy of Image2Vec's CNN, initialised from it and
  trained end to end with the text encoder (the descriptor is then recomputed for every batch).
* ``"image2vec"``: the text encoder is trained into the frozen Image2Vec space,
  so the photo index serves text queries too. Image2Vec only separates
  articleTypes, so titles cannot find their own item there (R@10 stays low).

The loss is symmetric InfoNCE with a learned temperature (CLIP), or
Karpathy & Fei-Fei's bidirectional hinge ranking loss. Items with the same
title are positives of each other, not negatives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import CheckpointError, save_checkpoint
from models.image_encoder import ImageEncoder
from models.loop import Profile, finish, fit, measure_epoch_seconds, plan_epochs, seconds_of
from models.metrics import precision_at_k, recall_at_k
from models.text import (
    HeadConfig,
    TextConfig,
    TextImageModel,
    Tokenizer,
    descriptor_dim,
    descriptor_of,
    normalise_text,
)
from models.train_encoder import load_encoder
from models.training import (
    Timer,
    augment_images,
    autocast_for,
    for_inference,
    in_eval_mode,
    inference_batch,
    inference_precision,
    pick_device,
    seed_everything,
    to_float_images,
)


@dataclass
class TextProfile(Profile):
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    space: str = "joint"  # "joint" | "image2vec"
    loss: str = "infonce"  # "infonce" | "hinge"
    margin: float = 0.2  # hinge only
    temperature: float = 0.05  # initial; learned (InfoNCE)
    embed_dim: int = 256  # joint space only; image2vec uses the encoder's size
    word_dim: int = 128
    hidden: int = 256
    head_hidden: int = 1024
    dropout: float = 0.1
    min_count: int = 2
    n_buckets: int = 4096
    max_len: int = 24
    augment: bool = False  # recompute the descriptor of augmented photos every batch (GPU)
    tower: str = "frozen"  # joint space: "frozen" Image2Vec, or "finetune" a copy of its CNN end to end
    tower_lr: float = 0.3  # the tower's learning rate, relative to ``lr``


PROFILES = {
    # ~3 minutes on 2 CPU cores, a minute of which is embedding the 44k photos once.
    "quick": TextProfile("quick", epochs=4, batch_size=256, word_dim=96, hidden=128),
    # The profile the targets are measured on: a few minutes on one GPU.
    "full": TextProfile("full", epochs=30, batch_size=512, lr=2e-3, embed_dim=384, word_dim=192, hidden=384,
                        head_hidden=1024, augment=True, tower="finetune"),
    # What `make train` uses without a GPU: the frozen Image2Vec's cached descriptors, a wider text side; as many of
    # 20 epochs as fit in 7 minutes (AVX2-only cores: ~6; the fastest measured, ~18 s an epoch: 20).
    "cpu": TextProfile("cpu", epochs=20, batch_size=256, word_dim=128, hidden=256, budget_seconds=420, min_epochs=3),
    # For tests: a few seconds.
    "tiny": TextProfile("tiny", epochs=2, batch_size=16, embed_dim=32, word_dim=16, hidden=16, head_hidden=32,
                        n_buckets=64, min_count=1),
}


@torch.no_grad()
def image_inputs(encoder: ImageEncoder, images: np.ndarray | torch.Tensor, space: str, device: torch.device,
                 batch_size: int = 512, augment_generator: torch.Generator | None = None) -> torch.Tensor:
    """Photos uint8 (N, H, W, 3) -> what the image side reads, on ``device``: the frozen descriptor
    (float16) for the joint space, the Image2Vec vector (float32) for the image2vec space."""
    in_eval_mode(encoder)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        chunk = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
        x = to_float_images(chunk.to(device))
        if augment_generator is not None:
            x = augment_images(x, augment_generator)
        with inference_precision(device):
            if space == "joint":
                out.append(descriptor_of(encoder.features, x).half())
            else:
                out.append(encoder.embed(x).float())
    if not out:
        width = descriptor_dim(encoder.config.widths[-2:]) if space == "joint" else encoder.config.embed_dim
        return torch.zeros(0, width, device=device)
    return torch.cat(out)


def contrastive_loss(text_vecs: torch.Tensor, image_vecs: torch.Tensor, same: torch.Tensor, scale: torch.Tensor,
                     kind: str, margin: float) -> torch.Tensor:
    """Text i belongs to image i; ``same[i, j]`` marks pairs that share a title (also positives)."""
    sims = text_vecs.float() @ image_vecs.float().t()
    if kind == "infonce":
        logits = sims * scale
        targets = same.float() / same.float().sum(1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
    if kind == "hinge":  # Karpathy & Fei-Fei 2015, eq. 9: sum over all violating negatives, both directions
        pos = sims.diag()
        text_query = (margin - pos[:, None] + sims).clamp_min(0).masked_fill(same, 0.0)
        image_query = (margin - pos[None, :] + sims).clamp_min(0).masked_fill(same, 0.0)
        return (text_query.sum(1) + image_query.sum(0)).mean()
    raise ValueError(f"unknown loss {kind!r}")


def retrieval_metrics_from_vectors(query_vecs: np.ndarray, query_item_index: np.ndarray, gallery_vecs: np.ndarray,
                                   query_labels: np.ndarray, gallery_labels: np.ndarray) -> dict[str, float]:
    """R@10: the query's own item (``gallery[query_item_index[i]]``) is among the 10 nearest;
    P@5: mean fraction of the 5 nearest gallery items sharing the query's label."""
    return {"r_at_10": recall_at_k(query_vecs, query_item_index, gallery_vecs, k=10),
            "p_at_5": precision_at_k(query_vecs, query_labels, gallery_vecs, gallery_labels, k=5)}


def text_retrieval_metrics(model: TextSearchModel, query_titles: list[str], query_item_index: np.ndarray,
                           gallery_images: np.ndarray, query_labels: np.ndarray,
                           gallery_labels: np.ndarray) -> dict[str, float]:
    """Titles as queries against photos: R@10 of the query's own item and P@5 of its articleType."""
    return retrieval_metrics_from_vectors(model.encode_text(query_titles), query_item_index,
                                          model.encode_images(gallery_images), query_labels, gallery_labels)


def _title_ids(titles: list[str]) -> np.ndarray:
    index: dict[str, int] = {}
    return np.array([index.setdefault(" ".join(normalise_text(t).split()), len(index)) for t in titles], np.int64)


@torch.no_grad()
def _embed_text(model: TextImageModel, tokenizer: Tokenizer, titles: list[str], device: torch.device,
                batch_size: int = 1024) -> torch.Tensor:
    in_eval_mode(model)
    out = [model.text(*(t.to(device) for t in tokenizer.encode(titles[s : s + batch_size])))
           for s in range(0, len(titles), batch_size)]
    return torch.cat(out).float() if out else torch.zeros(0, model.text.config.embed_dim, device=device)


@torch.no_grad()
def _embed_photos(model: TextImageModel, images: np.ndarray | torch.Tensor, device: torch.device,
                  batch_size: int | None = None) -> torch.Tensor:
    """Photos uint8 (N, H, W, 3) -> joint-space vectors through the model's own tower (eval mode)."""
    in_eval_mode(model)
    batch_size = batch_size or inference_batch(device)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        chunk = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
        x = to_float_images(chunk.to(device)).contiguous(memory_format=torch.channels_last)
        with inference_precision(device):  # the CNN; the head in float32, as for the frozen descriptors
            descriptors = descriptor_of(model.tower, x)
        out.append(model.image_head(descriptors.float()).float())
    return torch.cat(out) if out else torch.zeros(0, model.image_head.config.embed_dim, device=device)


@torch.no_grad()
def _embed_inputs(model: TextImageModel, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    if model.image_head is None:
        return inputs.float()
    in_eval_mode(model)
    return torch.cat([model.image_head(inputs[s : s + batch_size]) for s in range(0, len(inputs), batch_size)])


def train_text(train_images: np.ndarray, train_titles: list[str], train_labels: np.ndarray, val_images: np.ndarray,
               val_titles: list[str], val_labels: np.ndarray, encoder_payload: dict, out_path, *,
               extra_gallery_images: np.ndarray | None = None, extra_gallery_labels: np.ndarray | None = None,
               profile: str | TextProfile = "quick", device: str | None = None, resume: bool = True,
               show_progress: bool = True, gallery_descriptors: np.ndarray | None = None) -> dict:
    """Train title <-> photo alignment, evaluate on the validation titles each epoch, write the checkpoint.

    Validation queries are searched among train + val + ``extra_gallery_images`` (pass the test split
    to measure against the whole catalog, as the targets are stated). ``gallery_descriptors``: the frozen
    encoder's descriptors of those photos in that order (the caller's cache), for the joint space's frozen
    tower: then no photo is embedded here.
    """
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    if prof.space not in ("joint", "image2vec"):
        raise ValueError(f"unknown space {prof.space!r}")
    if prof.tower not in ("frozen", "finetune"):
        raise ValueError(f"unknown tower {prof.tower!r}")
    finetune = prof.tower == "finetune" and prof.space == "joint"
    dev = pick_device(device)
    seed_everything(prof.seed)
    encoder = load_encoder(encoder_payload, dev)
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder_version = encoder_payload["version"]

    n_train = len(train_images) if prof.max_train_items is None else min(prof.max_train_items, len(train_images))
    rng = np.random.default_rng(prof.seed)
    subset = np.sort(rng.permutation(len(train_images))[:n_train])
    titles = [train_titles[i] for i in subset]
    tokenizer = Tokenizer.build(titles, min_count=prof.min_count, max_len=prof.max_len, n_buckets=prof.n_buckets)
    tok_ids, tok_grams, tok_lengths = (t.to(dev) for t in tokenizer.encode(titles))
    title_ids = torch.from_numpy(_title_ids(titles)).to(dev)

    text_config = TextConfig(vocab_size=len(tokenizer), n_buckets=prof.n_buckets, word_dim=prof.word_dim,
                             hidden=prof.hidden, dropout=prof.dropout,
                             embed_dim=prof.embed_dim if prof.space == "joint" else encoder.config.embed_dim)
    head_config = (HeadConfig(in_dim=descriptor_dim(encoder.config.widths[-2:]), hidden=prof.head_hidden,
                              embed_dim=prof.embed_dim, dropout=prof.dropout) if prof.space == "joint" else None)
    tower_config = ({"widths": list(encoder.config.widths), "blocks": encoder.config.blocks,
                     "stem_stride": encoder.config.stem_stride} if finetune else None)
    model = TextImageModel(text_config, head_config, temperature=prof.temperature, tower=tower_config)
    if finetune:
        model.tower.load_state_dict(encoder.features.state_dict())
        model.tower.to(memory_format=torch.channels_last)
    model = model.to(dev)

    timer = Timer()
    gallery_photos = [train_images, val_images] + ([extra_gallery_images] if extra_gallery_images is not None else [])
    if finetune:  # the photo side changes with training: embedded again after each epoch
        train_inputs = gallery_inputs = None
    else:  # the frozen image side is computed once for every photo: training inputs and the validation gallery
        if gallery_descriptors is not None and prof.space == "joint":
            gallery_inputs = torch.from_numpy(np.ascontiguousarray(gallery_descriptors)).to(dev)
            if len(gallery_inputs) != sum(map(len, gallery_photos)):
                raise ValueError(f"{len(gallery_inputs)} descriptors for {sum(map(len, gallery_photos))} photos")
        else:
            if show_progress:
                tqdm.write(f"text: embedding {sum(map(len, gallery_photos))} photos with {encoder_version}")
            gallery_inputs = torch.cat([image_inputs(encoder, p, prof.space, dev) for p in gallery_photos])
        train_inputs = gallery_inputs[torch.from_numpy(subset).to(dev)]
    gallery_labels = np.concatenate([np.asarray(train_labels), np.asarray(val_labels)] +
                                    ([np.asarray(extra_gallery_labels)] if extra_gallery_labels is not None else []))
    if extra_gallery_images is not None and extra_gallery_labels is None:
        gallery_labels = np.concatenate([gallery_labels, np.full(len(extra_gallery_images), -1)])
    val_item_index = np.arange(len(train_images), len(train_images) + len(val_images))
    embed_seconds = timer.seconds
    train_pixels = (torch.from_numpy(np.ascontiguousarray(np.asarray(train_images)[subset])).to(dev)
                    if (prof.augment or finetune) and prof.space == "joint" else None)

    steps_per_epoch = max(1, n_train // prof.batch_size)
    tower_params = list(model.tower.parameters()) if finetune else []
    others = [p for n, p in model.named_parameters() if not n.startswith("tower.")]
    groups = [{"params": others, "lr": prof.lr}] + ([{"params": tower_params, "lr": prof.lr * prof.tower_lr}]
                                                     if tower_params else [])

    def signature_of(p: TextProfile) -> dict:
        return {"profile": asdict(p), "text": text_config.to_dict(),
                "head": head_config.to_dict() if head_config else None, "encoder_version": encoder_version,
                "n_train": n_train,
                "tokenizer": hashlib.sha1(json.dumps(tokenizer.to_dict()).encode()).hexdigest()[:12]}

    def step(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if finetune:
            x = augment_images(to_float_images(train_pixels[idx]), gen) if prof.augment \
                else to_float_images(train_pixels[idx])
            with autocast_for(dev):
                inputs = descriptor_of(model.tower, x.contiguous(memory_format=torch.channels_last))
        elif train_pixels is not None:
            inputs = image_inputs(encoder, train_pixels[idx], prof.space, dev, batch_size=len(idx),
                                  augment_generator=gen)
        else:
            inputs = train_inputs[idx]
        length = int(tok_lengths[idx].max())
        with autocast_for(dev):
            text_vecs = model.text(tok_ids[idx, :length], tok_grams[idx, :length], tok_lengths[idx])
            image_vecs = model.image_head(inputs) if model.image_head is not None else inputs.float()
            same = title_ids[idx, None] == title_ids[None, idx]
            return contrastive_loss(text_vecs, image_vecs, same, model.scale, prof.loss, prof.margin)

    def evaluate() -> dict[str, float]:
        gallery_vecs = (torch.cat([_embed_photos(model, p, dev) for p in gallery_photos]) if finetune
                        else _embed_inputs(model, gallery_inputs))
        metrics = retrieval_metrics_from_vectors(
            _embed_text(model, tokenizer, list(val_titles), dev).cpu().numpy(), val_item_index,
            gallery_vecs.float().cpu().numpy(), np.asarray(val_labels), gallery_labels)
        return {"temperature": float(1.0 / model.scale.item()), **{f"val_{k}": v for k, v in metrics.items()}}

    prof, epoch_seconds = plan_epochs(
        "text", prof, out_path, signature_of, resume=resume, show_progress=show_progress,
        measure=lambda: measure_epoch_seconds(step, n_train, prof.batch_size, dev, {"model": model},
                                              lambda: seconds_of(evaluate)))
    optimizer = torch.optim.AdamW(groups, lr=prof.lr, weight_decay=prof.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], pct_start=0.1,
                                                    total_steps=prof.epochs * steps_per_epoch)
    signature = signature_of(prof)
    fitted = fit("text", model, optimizer, scheduler, out_path=out_path, signature=signature, epochs=prof.epochs,
                 n_items=n_train, batch_size=prof.batch_size, seed=prof.seed, step=step, evaluate=evaluate,
                 device=dev, resume=resume, show_progress=show_progress, already_seconds=embed_seconds)

    config = {"space": prof.space, "text": text_config.to_dict(),
              "head": head_config.to_dict() if head_config else None, "tokenizer": tokenizer.to_dict(),
              "encoder_version": encoder_version, "tower": tower_config}
    payload = save_checkpoint(
        out_path, kind="text", config=config, model=model.cpu(),
        metrics=fitted.metrics | {"gallery_size": len(gallery_labels)},
        train=fitted.train_info(profile=asdict(prof), device=str(dev), n_train=n_train, embed_seconds=embed_seconds,
                                measured_epoch_seconds=epoch_seconds),
        extra={"encoder_version": encoder_version},
    )
    finish(out_path)
    return payload


class TextSearchModel:
    """A loaded text checkpoint: titles and photos -> vectors of one space (``space``, ``dim``)."""

    def __init__(self, payload: dict, encoder: ImageEncoder | None, device: torch.device):
        config = payload["config"]
        self.space: str = config["space"]
        self.version: str = payload["version"]
        self.encoder_version: str = config["encoder_version"]
        self.device = device
        self.tokenizer = Tokenizer.from_dict(config["tokenizer"])
        head = HeadConfig.from_dict(config["head"]) if config["head"] else None
        self.model = TextImageModel(TextConfig.from_dict(config["text"]), head, tower=config.get("tower"))
        self.model.load_state_dict(payload["model"])
        for_inference(self.model, device)
        self.encoder = encoder
        self.dim: int = self.model.text.config.embed_dim

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Queries -> float32 (N, dim), L2-normalised. Any string is accepted.

        A few queries on CPU run on one thread: the GRU's steps are too small to share, and on a busy
        machine the thread hand-offs cost ~50 ms per query against ~1 ms alone (measured, 2 cores).
        """
        texts = list(texts)
        threads = torch.get_num_threads()
        single = self.device.type == "cpu" and len(texts) <= 16 and threads > 1
        if single:
            torch.set_num_threads(1)
        try:
            vecs = _embed_text(self.model, self.tokenizer, texts, self.device)
        finally:
            if single:
                torch.set_num_threads(threads)
        return vecs.cpu().numpy().astype(np.float32)

    def reads_descriptors_of(self, encoder_version: str) -> bool:
        """Whether the photo side reads this encoder's frozen descriptors (``encode_descriptors``): a joint
        space on the frozen Image2Vec, without a fine-tuned CNN of its own."""
        return self.space == "joint" and self.model.tower is None and self.encoder_version == encoder_version

    @torch.inference_mode()
    def encode_descriptors(self, descriptors: np.ndarray) -> np.ndarray:
        """The frozen encoder's descriptors of photos (N, D') -> float32 (N, dim), what ``encode_images``
        gives for those photos, without running the CNN again."""
        inputs = torch.from_numpy(np.asarray(descriptors, np.float16)).to(self.device)
        return _embed_inputs(self.model, inputs).float().cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Photos uint8 (N, 80, 60, 3) -> float32 (N, dim): the vectors the text-query index is built from."""
        if self.model.tower is not None:  # its own fine-tuned CNN
            return _embed_photos(self.model, images, self.device, batch_size).cpu().numpy().astype(np.float32)
        if self.encoder is None:
            raise CheckpointError("encode_images needs the image encoder checkpoint this text model was trained with")
        inputs = image_inputs(self.encoder, images, self.space, self.device, batch_size or inference_batch(self.device))
        return _embed_inputs(self.model, inputs).float().cpu().numpy().astype(np.float32)


def load_text_model(payload: dict, encoder_payload: dict | None = None,
                    device: str | torch.device = "cpu") -> TextSearchModel:
    """Rebuild text search from its checkpoint; ``encoder_payload`` (the Image2Vec checkpoint it was
    trained against, checked by version) is needed only for ``encode_images``."""
    if payload.get("kind") != "text":
        raise CheckpointError(f"expected a 'text' checkpoint, got {payload.get('kind')!r}")
    device = torch.device(device)
    encoder = None
    if encoder_payload is not None:
        if encoder_payload.get("version") != payload["config"]["encoder_version"]:
            raise CheckpointError(f"this text model was trained with image encoder "
                                  f"{payload['config']['encoder_version']}, not {encoder_payload.get('version')}")
        encoder = load_encoder(encoder_payload, device)
    return TextSearchModel(payload, encoder, device)
