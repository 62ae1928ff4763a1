"""Image2Vec: a small residual CNN ending in global average pooling.

The network maps an (3, 80, 60) image to an L2-normalised ``embed_dim`` vector.
It is trained as a cosine-softmax classifier over articleTypes (with an additive
margin), so vectors of the same articleType end up close in cosine distance,
which is what the Annoy index searches with (metric "angular").

``class_activation_map`` gives the CAM of a class: since pooling is a plain
average followed by linear maps, the class score decomposes over positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MEAN = 0.5
STD = 0.5


@dataclass
class EncoderConfig:
    widths: tuple[int, ...] = (32, 64, 128, 256)
    embed_dim: int = 128
    n_classes: int = 141
    class_names: list[str] = field(default_factory=list)
    blocks: int = 1  # residual units per stage
    stem_stride: int = 2
    scale: float = 16.0
    margin: float = 0.2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


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

    @staticmethod
    def normalise_input(images_uint8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
        x = images_uint8.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - MEAN) / STD

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

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
