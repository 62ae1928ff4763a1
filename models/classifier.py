"""The fused image + title classifier (Lee & Kim 2023; Kolisnik et al. 2021).

A residual CNN ending in global average pooling reads the photo; a
bidirectional LSTM reads the title. Their features are concatenated with a
"title present" flag and go through dense layers to one softmax head per label
(articleType first, then subCategory, gender, baseColour). With
``use_text=False`` the same network without the text branch is the image-only
twin.

Every head also has a linear "CAM head" straight on the pooled image features
(trained alongside, deep supervision). Since pooling is a plain average and the
CAM head is linear, its class score is exactly the mean over positions of the
class activation map (Zhou et al. 2016; seed 002), which is what
``class_activation_map`` returns: where the CNN looked for that class.

Titles are optional at inference: training drops the whole title of some items
(modality dropout), so a missing title gives the image-only behaviour of the
same network.

With ``frozen_encoder`` set (what ``search.train`` trains), the photo side is
Image2Vec's CNN, frozen and copied into the checkpoint: the heads read its
descriptor (``models.image_encoder.frozen_descriptor``), cached once per catalog,
and the linear CAM heads its last stage's pooled features. The fused model and
its image-only twin then see the same features, with the title and without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import SavedConfig
from models.image_encoder import backbone, descriptor_dim, descriptor_of, descriptor_offsets
from models.training import for_inference, in_eval_mode, inference_batch, inference_precision, to_float_images
from models.vocab import PAD, Vocab

MAIN_HEAD = "category"  # articleType


@dataclass
class ClassifierConfig(SavedConfig):
    label_names: dict[str, list[str]] = field(default_factory=dict)  # head -> class names; MAIN_HEAD first
    use_text: bool = True
    vocab: dict | None = None  # models.vocab.Vocab.to_dict()
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: int = 1  # residual units per CNN stage
    stem_stride: int = 2
    text_len: int = 16
    word_dim: int = 64
    text_hidden: int = 96  # per LSTM direction
    fused_dim: int = 256
    dropout: float = 0.3
    frozen_encoder: str = ""  # version of the Image2Vec whose frozen CNN it reads; "" = a CNN of its own


class TitleEncoder(nn.Module):
    """Word embeddings -> BiLSTM -> max over the title's words."""

    def __init__(self, vocab_size: int, word_dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(word_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast(tokens.device.type, enabled=False):  # the LSTM stays in float32 under bf16 autocast
            states, _ = self.lstm(self.embed(tokens).float())
        mask = (tokens != PAD).unsqueeze(-1)
        pooled = states.masked_fill(~mask, float("-inf")).amax(dim=1)
        return torch.where(mask.any(dim=1), pooled, torch.zeros_like(pooled))  # empty title -> zeros


class FusedClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.vocab = Vocab.from_dict(config.vocab) if config.use_text else None
        self.features = backbone(config.widths, config.blocks, config.stem_stride)
        cin = config.widths[-1]
        if config.frozen_encoder:
            self.features.requires_grad_(False)
            self.image_dim = descriptor_dim(config.widths[-2:])
            self.input_norm = nn.LayerNorm(self.image_dim)
            self.cam_slice = slice(*descriptor_offsets(config.widths))
        else:
            self.image_dim = cin
            self.input_norm = nn.Identity()
            self.cam_slice = slice(None)
        fused_in = self.image_dim
        if config.use_text:
            self.text = TitleEncoder(len(self.vocab), config.word_dim, config.text_hidden)
            fused_in += self.text.out_dim + 1  # + "title present" flag
        self.dense = nn.Sequential(nn.Dropout(config.dropout / 2), nn.Linear(fused_in, config.fused_dim),
                                   nn.BatchNorm1d(config.fused_dim), nn.ReLU(inplace=True), nn.Dropout(config.dropout))
        self.heads = nn.ModuleDict({h: nn.Linear(config.fused_dim, len(n)) for h, n in config.label_names.items()})
        self.cam_heads = nn.ModuleDict({h: nn.Linear(cin, len(n)) for h, n in config.label_names.items()})

    @property
    def head_names(self) -> list[str]:
        return list(self.config.label_names)

    def encode_titles(self, titles: list[str | None] | None, n: int) -> torch.Tensor:
        """Token ids (n, text_len); None or '' gives an all-PAD row (no title)."""
        if self.vocab is None:
            raise RuntimeError("this classifier was trained without text")
        return self.vocab.encode_batch(list(titles) if titles is not None else [None] * n, self.config.text_len)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W) -> what the heads read: the frozen descriptor, or the pooled CNN."""
        if self.config.frozen_encoder:
            return descriptor_of(self.features, x)
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None,
                present: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Images in [-1, 1] (N, 3, H, W) and token ids (N, L) -> (fused logits, CAM-head logits) per head.

        ``present`` (N,) in {0, 1} says which titles to use; by default a title
        is present when it has at least one token.
        """
        return self.from_pooled(self.pool(x), tokens, present)

    def from_pooled(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None,
                    present: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``forward`` from what ``pool`` gives (cached descriptors while training the heads)."""
        cam_input = pooled[:, self.cam_slice]
        pooled = self.input_norm(pooled.float())
        parts = [pooled]
        if self.config.use_text:
            if tokens is None:
                tokens = torch.full((pooled.shape[0], 1), PAD, dtype=torch.long, device=pooled.device)
            if present is None:
                present = (tokens != PAD).any(dim=1)
            present = present.to(pooled.dtype).unsqueeze(1)
            parts += [self.text(tokens).to(pooled.dtype) * present, present]
        hidden = self.dense(torch.cat(parts, dim=1))
        fused = {h: head(hidden) for h, head in self.heads.items()}
        cam = {h: head(cam_input) for h, head in self.cam_heads.items()}
        return fused, cam


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model: FusedClassifier, images: np.ndarray | None, titles: list[str] | None = None,
            batch_size: int | None = None, flip_average: bool = False,
            descriptors: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """uint8 images (N, 80, 60, 3) and optional titles -> head -> probabilities (N, C).

    ``titles=None`` or an empty title gives the image-only behaviour; the
    image-only twin ignores titles. ``flip_average``: the mean of the image's and
    its mirror image's probabilities (one forward pass over both views), as
    ``models.train_encoder.embed_array`` does for vectors. ``descriptors``: what
    ``pool`` gives of the images, (N, D), or (2, N, D) for both views, when the
    caller already has them (the encoder's pass over a query gives them): the
    CNN is not run again.
    """
    in_eval_mode(model)
    dev = _device_of(model)
    if descriptors is not None:
        descriptors = np.asarray(descriptors)
        views = descriptors if descriptors.ndim == 3 else descriptors[None]
        flip_average = len(views) == 2
        n_items = views.shape[1]
    else:
        images = np.asarray(images)
        n_items = len(images)
    if titles is not None and len(titles) != n_items:
        raise ValueError(f"{n_items} images but {len(titles)} titles")
    out: dict[str, list[torch.Tensor]] = {h: [] for h in model.head_names}
    for sl in _batches(n_items, batch_size or inference_batch(dev, flip_average)):
        if descriptors is not None:
            pooled = torch.from_numpy(np.array(views[:, sl].reshape(-1, views.shape[2]), np.float32)).to(dev)
            n = pooled.shape[0] // len(views)
        else:
            x = to_float_images(torch.from_numpy(np.array(images[sl])).to(dev))
            n = x.shape[0]
            with inference_precision(dev):  # the precision of the encoder's pass, whose descriptors it may read
                pooled = model.pool(torch.cat([x, x.flip(3)]) if flip_average else x).float()
        tokens = None
        if model.config.use_text:
            tokens = model.encode_titles(titles[sl] if titles is not None else None, n).to(dev)
            tokens = tokens.repeat(2, 1) if flip_average else tokens
        fused, _ = model.from_pooled(pooled, tokens)
        for h, logits in fused.items():
            probs = logits.float().softmax(dim=1).cpu()
            out[h].append((probs[:n] + probs[n:]) / 2 if flip_average else probs)
    return {h: (torch.cat(v).numpy() if v else np.zeros((0, len(model.config.label_names[h])), np.float32))
            for h, v in out.items()}


@torch.no_grad()
def image_features(model: FusedClassifier, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Pooled CNN features (N, C), L2-normalised: for nearest-neighbour look-ups."""
    in_eval_mode(model)
    dev = _device_of(model)
    out = []
    for sl in _batches(len(images), batch_size):
        x = to_float_images(torch.from_numpy(np.array(images[sl])).to(dev))
        out.append(F.normalize(model.pool(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.image_dim), np.float32)


@torch.no_grad()
def class_activation_map(model: FusedClassifier, images: np.ndarray, head: str = MAIN_HEAD,
                         class_index: int | np.ndarray | list[int] = 0, batch_size: int = 256) -> np.ndarray:
    """CAM (N, H, W) float32 in [0, 1] at the image size: where the CNN looked for that class.

    ``class_index`` is one class for all images or one per image. Exact for the
    head's linear CAM head: its logit is the mean of the (un-normalised) map
    plus a bias.
    """
    in_eval_mode(model)
    dev = _device_of(model)
    images = np.asarray(images)
    weights = model.cam_heads[head].weight  # (C_classes, C_features)
    idx_all = torch.as_tensor(np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(images),)).copy())
    out = []
    for sl in _batches(len(images), batch_size):
        x = to_float_images(torch.from_numpy(np.array(images[sl])).to(dev))
        fmap = model.features(x).float()
        cam = torch.einsum("nchw,nc->nhw", fmap, weights[idx_all[sl].to(dev)].float())
        cam = F.interpolate(cam.unsqueeze(1), size=x.shape[2:], mode="bilinear", align_corners=False).squeeze(1)
        cam = cam - cam.amin(dim=(1, 2), keepdim=True)
        out.append((cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, *images.shape[1:3]), np.float32)


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (...,) -> RGB float in [0, 1] (..., 3), blue -> cyan -> yellow -> red."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # r, g, b
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def cam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a CAM (H, W) in [0, 1] as a jet heatmap over a uint8 image (H, W, 3); returns uint8 (H, W, 3)."""
    image = np.asarray(image)
    if image.shape[:2] != cam.shape:
        raise ValueError(f"image {image.shape[:2]} and CAM {cam.shape} differ in size")
    heat = jet_colormap(cam) * 255.0
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat + 0.5, 0, 255).astype(np.uint8)


def load_classifier(payload: dict, device: str | torch.device = "cpu") -> FusedClassifier:
    """Rebuild a classifier from its checkpoint dict (``models.checkpoint.load_checkpoint(path, "classifier")``)
    alone: a classifier on a frozen Image2Vec carries its copy of that CNN."""
    if payload.get("kind") != "classifier":
        raise ValueError(f"expected a classifier checkpoint, got {payload.get('kind')!r}")
    model = FusedClassifier(ClassifierConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return for_inference(model, device)
