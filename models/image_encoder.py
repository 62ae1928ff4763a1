"""Image2Vec: a small residual CNN ending in global average pooling.

The network maps an (3, 80, 60) image to an L2-normalised ``embed_dim`` vector.
It is trained as a cosine-softmax classifier over articleTypes (with an additive
margin), so vectors of the same articleType end up close in cosine distance,
which is what the Annoy index searches with (metric "angular").

``class_activation_map`` gives the CAM of a class: since pooling is a plain
average followed by linear maps, the class score decomposes over positions.

``describe`` is what every other model reads of a photo: the frozen network's
pooled feature maps with the photo's colours (``frozen_descriptor``). The CNN is
trained once, here; the text model's photo side, the fused classifier and its
image-only twin and the captioner learn only their heads on this descriptor,
which is computed once per catalog photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import SavedConfig
from models.training import in_eval_mode, inference_batch, inference_precision, to_float_images


@dataclass
class EncoderConfig(SavedConfig):
    widths: tuple[int, ...] = (32, 64, 128, 256)
    embed_dim: int = 128
    n_classes: int = 141
    class_names: list[str] = field(default_factory=list)
    blocks: int = 1  # residual units per stage
    stem_stride: int = 2
    scale: float = 16.0
    margin: float = 0.2
    dropout: float = 0.1


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualStage(nn.Module):
    """Two 3x3 convs with a skip connection (1x1 projection when widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv_bn(cin, cout)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                                     nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


def backbone(widths: tuple[int, ...], blocks: int = 1, stem_stride: int = 2) -> nn.Sequential:
    """The CNN every image model here shares: a 3x3 stem (stride 2: 80x60 -> 40x30; stride 1: the first
    stage sees every pixel), then one stage per width, each of ``blocks`` residual units, with 2x2 max
    pooling between stages.

    Each stage is one element of the returned Sequential (``features[-1]`` is the last stage); a stage
    of one unit is that unit itself, so checkpoints of the one-unit networks keep their keys.
    """
    layers: list[nn.Module] = [conv_bn(3, widths[0], stride=stem_stride)]
    cin = widths[0]
    for i, cout in enumerate(widths):
        if i > 0:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        units = [ResidualStage(cin if j == 0 else cout, cout) for j in range(blocks)]
        layers.append(units[0] if blocks == 1 else nn.Sequential(*units))
        cin = cout
    return nn.Sequential(*layers)


class ImageEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.features = backbone(config.widths, config.blocks, config.stem_stride)
        cin = config.widths[-1]
        self.dropout = nn.Dropout(config.dropout)
        self.project = nn.Linear(cin, config.embed_dim)
        self.class_weight = nn.Parameter(torch.randn(config.n_classes, config.embed_dim) * 0.01)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def describe(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the frozen descriptor (N, ``descriptor_dim(widths[-2:])``)."""
        return descriptor_of(self.features, x)

    def embed_and_describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vector and the descriptor of images in one pass over the CNN."""
        middle = self.features[:-1](x)
        last = self.features[-1](middle)
        emb = F.normalize(self.project(self.dropout(last.mean(dim=(2, 3)))), dim=1)
        return emb, frozen_descriptor([middle, last], x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (N, 3, H, W) -> L2-normalised (N, embed_dim)."""
        pooled = self.feature_map(x).mean(dim=(2, 3))
        return F.normalize(self.project(self.dropout(pooled)), dim=1)

    def logits(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine logits; with labels, the target logit gets the additive margin (CosFace)."""
        cos = emb @ F.normalize(self.class_weight, dim=1).t()
        if labels is not None and self.config.margin:
            cos = cos - self.config.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.config.scale * cos

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(x)
        return emb, self.logits(emb)

    @torch.no_grad()
    def class_activation_map(self, x: torch.Tensor, class_index: torch.Tensor | int) -> torch.Tensor:
        """CAM in [0, 1] at the input's size, (N, H, W), for one class per image."""
        fmap = self.feature_map(x)  # (N, C, h, w)
        weights = F.normalize(self.class_weight, dim=1) @ self.project.weight  # (n_classes, C)
        idx = torch.as_tensor(class_index, device=x.device).expand(x.shape[0])
        cam = torch.einsum("nchw,nc->nhw", fmap, weights[idx])
        cam = F.interpolate(cam.unsqueeze(1), size=x.shape[2:], mode="bilinear", align_corners=False).squeeze(1)
        cam = cam - cam.amin(dim=(1, 2), keepdim=True)
        return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)


COLOUR_LEVELS = 6  # per RGB channel -> 216 colour bins: enough to tell navy from black, olive from green


def colour_histogram(images: torch.Tensor, levels: int = COLOUR_LEVELS, white: float = 0.92) -> torch.Tensor:
    """Colours of the non-white pixels of (N, 3, H, W) images in [-1, 1]: the square-rooted RGB
    histogram, the fraction of non-white pixels and the mean colour of each quarter,
    (N, levels**3 + 1 + 12)."""
    x = F.avg_pool2d((images.float() + 1.0) / 2.0, 2).clamp(0.0, 1.0)  # coarse is enough for colour
    fg = (x.amin(1, keepdim=True) < white).float()  # (N, 1, h, w)
    q = (x * levels).long().clamp_(max=levels - 1)
    idx = ((q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]).flatten(1)
    hist = torch.zeros(x.shape[0], levels**3, device=x.device).scatter_add_(1, idx, fg.flatten(1))
    n_fg = hist.sum(1, keepdim=True)
    quarter_colour = F.adaptive_avg_pool2d(x * fg, (2, 2)) / F.adaptive_avg_pool2d(fg, (2, 2)).clamp_min(1e-3)
    return torch.cat([(hist / n_fg.clamp_min(1.0)).sqrt(), n_fg / idx.shape[1], quarter_colour.flatten(1)], dim=1)


def frozen_descriptor(feature_maps: Sequence[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The fixed input of ``ImageHead`` from the last two Image2Vec feature maps (N, C, h, w) and the
    photos: mean and max pooling of both, a 2x2 grid of the last, and the colours of the photo."""
    parts = []
    for i, fmap in enumerate(feature_maps):
        fmap = fmap.float()
        parts += [fmap.mean((2, 3)), fmap.amax((2, 3))]
        if i == len(feature_maps) - 1:
            parts.append(F.adaptive_avg_pool2d(fmap, (2, 2)).flatten(1))
    return torch.cat(parts + [colour_histogram(images)], dim=1)


def descriptor_of(features: nn.Sequential, images: torch.Tensor) -> torch.Tensor:
    """``frozen_descriptor`` of an Image2Vec-shaped CNN (``features[-1]`` is its last stage) on images in [-1, 1]."""
    middle = features[:-1](images)
    return frozen_descriptor([middle, features[-1](middle)], images)


def descriptor_dim(channels: Sequence[int], levels: int = COLOUR_LEVELS) -> int:
    """Width of ``frozen_descriptor`` for feature maps of these channel counts."""
    return 2 * sum(channels) + 4 * channels[-1] + levels**3 + 13


def descriptor_offsets(widths: Sequence[int]) -> tuple[int, int]:
    """(start, end) of the last stage's mean-pooled features inside ``frozen_descriptor``: what a linear
    CAM head reads, so that its class score is the mean of a class activation map."""
    middle = widths[-2]
    return 2 * middle, 2 * middle + widths[-1]


@torch.no_grad()
def describe_array(encoder: nn.Module, images: np.ndarray, device: str | torch.device = "cpu", views: int = 1,
                   batch_size: int | None = None) -> np.ndarray:
    """Frozen descriptors of uint8 photos (N, 80, 60, 3), float16 (views, N, D): view 0 the photo as it is,
    view 1 its mirror image (a free augmentation for the heads trained on them). ``encoder``: anything with
    an Image2Vec-shaped ``features``."""
    device = torch.device(device)
    in_eval_mode(encoder)
    batch_size = batch_size or inference_batch(device)
    out: list[list[torch.Tensor]] = [[] for _ in range(views)]
    for start in range(0, len(images), batch_size):
        x = to_float_images(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device))
        x = x.contiguous(memory_format=torch.channels_last)
        for v in range(views):
            with inference_precision(device):
                out[v].append(descriptor_of(encoder.features, x.flip(3) if v else x).half().cpu())
    width = descriptor_dim(_widths(encoder)[-2:])
    return np.stack([torch.cat(o).numpy() if o else np.zeros((0, width), np.float16) for o in out])


@torch.no_grad()
def embed_and_describe_array(model: ImageEncoder, images: np.ndarray,
                             device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Mirror-averaged vectors (N, D) and both views' frozen descriptors (2, N, D') of uint8 photos
    (N, 80, 60, 3) from one pass over the CNN: what a photo query needs for the index and for the
    image-only heads that read the same frozen CNN."""
    device = torch.device(device)
    in_eval_mode(model)
    batch = inference_batch(device, flip_average=True)  # in chunks that stay in cache, as ``embed`` does
    vectors, descriptors = [], []
    for start in range(0, max(len(images), 1), batch):  # no images: one empty pass gives the empty shapes
        x = to_float_images(torch.from_numpy(np.array(images[start : start + batch], np.uint8)).to(device))
        with inference_precision(device):
            emb, desc = model.embed_and_describe(torch.cat([x, x.flip(3)]))
        n = len(x)
        vectors.append(F.normalize(emb[:n].float() + emb[n:].float(), dim=1).cpu())
        descriptors.append(desc.float().cpu().reshape(2, n, -1))
    return torch.cat(vectors).numpy(), torch.cat(descriptors, dim=1).numpy()


def _widths(model: nn.Module) -> tuple[int, ...]:
    return tuple(model.config.widths)


def copy_backbone(target: nn.Sequential, encoder_payload: dict) -> None:
    """Load an Image2Vec checkpoint's CNN into ``target`` (a ``backbone`` of the same shape) and freeze it."""
    state = {k[len("features."):]: v for k, v in encoder_payload["model"].items() if k.startswith("features.")}
    target.load_state_dict(state)
    target.requires_grad_(False)


def frozen_shape(encoder_payload: dict) -> dict:
    """The CNN shape (widths, blocks, stem stride) of an Image2Vec checkpoint, for a head model's config."""
    config = encoder_payload["config"]
    return {"widths": tuple(config["widths"]), "blocks": config["blocks"], "stem_stride": config["stem_stride"]}


def adopt_backbone(model: nn.Module, encoder_payload: dict, train_images: np.ndarray, val_images: np.ndarray,
                   device: torch.device, train_views: int, train_descriptors: np.ndarray | None,
                   val_descriptors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Give a head model (``model.features``) the encoder's frozen CNN and return the descriptors it trains
    and validates on: the caller's cached ones, else computed here ((views, N, D) each)."""
    copy_backbone(model.features, encoder_payload)
    if train_descriptors is None:
        train_descriptors = describe_array(model, train_images, device, views=train_views)
    if val_descriptors is None:
        val_descriptors = describe_array(model, val_images, device, views=1)
    return np.asarray(train_descriptors), np.asarray(val_descriptors)


def _head_reader(encoder_payload: dict) -> ImageEncoder:
    """An Image2Vec checkpoint's network for reading descriptors (its projection and head; the CNN is not run)."""
    model = ImageEncoder(EncoderConfig.from_dict(encoder_payload["config"]))
    model.load_state_dict(encoder_payload["model"])
    return model.eval()


@torch.no_grad()
def vectors_of_descriptors(encoder_payload: dict, descriptors: np.ndarray) -> np.ndarray:
    """Image2Vec's vectors (N, D) of photos from their frozen descriptors, (views, N, D'): each view's last stage,
    mean-pooled (``descriptor_offsets``), through its projection, and the views averaged as ``embed`` averages a
    photo and its mirror image (float16 descriptors: equal to rounding)."""
    return _vectors(_head_reader(encoder_payload), descriptors).numpy()


@torch.no_grad()
def head_probs_of_descriptors(encoder_payload: dict, descriptors: np.ndarray) -> np.ndarray:
    """What Image2Vec's own cosine head says of photos, (N, C) probabilities, from their frozen descriptors
    (N, D'), as ``ImageEncoder.logits`` reads their vectors (``vectors_of_descriptors``)."""
    model = _head_reader(encoder_payload)
    return model.logits(_vectors(model, np.asarray(descriptors)[None])).softmax(dim=1).numpy()


def _vectors(model: ImageEncoder, descriptors: np.ndarray) -> torch.Tensor:
    start, end = descriptor_offsets(model.config.widths)
    views = [F.normalize(model.project(torch.from_numpy(np.asarray(d[:, start:end], np.float32))), dim=1)
             for d in descriptors]
    return F.normalize(torch.stack(views).sum(0), dim=1)
