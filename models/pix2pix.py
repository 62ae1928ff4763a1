"""pix2pix (Isola et al. 2017) for 80x60 catalog sketches: a U-Net generator, a PatchGAN critic and the GAN loss.

The generator turns a one-channel sketch in [-1, 1] (strokes -1, paper +1)
into an RGB image in [-1, 1] of the same size. Four stride-2 levels need a
height and width divisible by 16, so the 60 px width is padded with paper to
64 inside ``forward`` and cropped back (80 is already 5 x 16).

Decisions, and why:

* **No dropout at inference.** pix2pix keeps dropout on at test time as its
  only noise source, but the paper itself notes that it makes little
  difference to the output. Search-as-you-draw needs the opposite: the same
  sketch must give the same image, hence the same vector and the same hits
  (stable results while drawing, cacheable, testable). Dropout is used while
  training as a regulariser in the two innermost decoder levels and
  ``model.eval()`` turns it off.
* **Resize-convolution in the decoder** (``upsample="resize"``): each level
  doubles the size by nearest-neighbour upsampling and then applies a 3x3
  convolution (Odena et al. 2016, "Deconvolution and checkerboard artifacts").
  A stride-2 4x4 transposed convolution gives even and odd output pixels
  different kernel taps, which drew a checkerboard over every picture; a
  nearest upsample has no energy at the Nyquist frequency and a convolution
  adds none, so the pattern cannot appear. ``"transpose"`` is the former
  design, kept so that checkpoints written with it still load.
* **InstanceNorm** (``norm="instance"``, no running statistics): like the
  former GroupNorm its output does not depend on the batch, so training and
  inference (one sketch) see the same network, and unlike BatchNorm there are
  no running statistics to drift from the batch statistics of training; on
  2 CPU cores it is about 3x faster than GroupNorm in a training step.
* **LSGAN (least squares) loss** (``GANLoss("lsgan")``). The vanilla BCE loss
  saturates once the critic wins, which at this tiny resolution happens within
  a few hundred steps; the squared error keeps giving the generator gradients
  proportional to how far its patches are from "real" and trains more stably
  in short runs. ``"vanilla"`` is there to compare against the paper.
* **A 34 px PatchGAN** (two stride-2 levels) rather than the paper's 70 px:
  on an 80x60 image a 70 px patch is the whole picture, and the L1 term
  already handles the low frequencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import SavedConfig

SKETCH_H, SKETCH_W = 80, 60
PAD_W = 64  # the U-Net's working width


@dataclass
class Pix2PixConfig(SavedConfig):
    ngf: int = 32  # generator width at the first level (doubles per level, at most 8x)
    ndf: int = 32  # discriminator width at the first level
    depth: int = 4  # stride-2 levels of the U-Net: 80x64 -> 5x4
    d_layers: int = 2  # stride-2 levels of the PatchGAN (receptive field 34 px)
    dropout: float = 0.5  # training only, innermost decoder levels
    dropout_levels: int = 2
    gan_mode: str = "lsgan"
    upsample: str = "resize"  # decoder: "resize" (nearest upsample + 3x3 conv) or "transpose" (the former design)
    norm: str = "instance"  # "instance", "batch" or "group" (the former design)

    def __post_init__(self):
        if self.upsample not in ("resize", "transpose"):
            raise ValueError(f"unknown upsample {self.upsample!r}; use 'resize' or 'transpose'")
        if self.norm not in ("instance", "batch", "group"):
            raise ValueError(f"unknown norm {self.norm!r}; use 'instance', 'batch' or 'group'")

    @classmethod
    def from_dict(cls, d: dict) -> Pix2PixConfig:
        # Checkpoints written before these fields existed hold the transposed-conv, GroupNorm networks.
        return cls(**{"upsample": "transpose", "norm": "group", **d})


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(min(8, channels // 4), channels)


def _upsample(kind: str, cin: int, cout: int, bias: bool) -> nn.Module:
    """Twice the height and width."""
    if kind == "transpose":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=bias))


class UnetGenerator(nn.Module):
    """Sketch (N, 1, 80, 60) in [-1, 1] -> image (N, 3, 80, 60) in [-1, 1], with skip connections per level."""

    def __init__(self, config: Pix2PixConfig):
        super().__init__()
        self.config = config
        widths = [config.ngf * min(2**i, 8) for i in range(config.depth)]
        self.down = nn.ModuleList()
        cin = 1
        for i, cout in enumerate(widths):
            innermost, outermost = i == config.depth - 1, i == 0
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=outermost or innermost)]
            if not (outermost or innermost):
                layers.append(_norm(config.norm, cout))
            layers.append(nn.ReLU(inplace=True) if innermost else nn.LeakyReLU(0.2, inplace=True))
            self.down.append(nn.Sequential(*layers))
            cin = cout
        self.up = nn.ModuleList()
        for i in reversed(range(config.depth)):
            cin = widths[i] if i == config.depth - 1 else 2 * widths[i]
            if i == 0:
                self.up.append(nn.Sequential(_upsample(config.upsample, cin, 3, bias=True), nn.Tanh()))
                continue
            layers = [_upsample(config.upsample, cin, widths[i - 1], bias=False), _norm(config.norm, widths[i - 1])]
            if config.depth - 1 - i < config.dropout_levels and config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            layers.append(nn.ReLU(inplace=True))
            self.up.append(nn.Sequential(*layers))

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        pad = PAD_W - sketch.shape[-1]
        left = pad // 2
        x = F.pad(sketch, (left, pad - left, 0, 0), value=1.0) if pad else sketch
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the innermost output is x itself
        for block in self.up:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x[..., left : left + sketch.shape[-1]] if pad else x


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (sketch, image) -> a grid of real/fake scores, one per overlapping patch."""

    def __init__(self, config: Pix2PixConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1 + 3, config.ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        cin = config.ndf
        for i in range(1, config.d_layers + 1):
            cout = config.ndf * min(2**i, 8)
            stride = 2 if i < config.d_layers else 1
            layers += [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), _norm(config.norm, cout),
                       nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, sketch: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([sketch, image], dim=1))


class GANLoss(nn.Module):
    """Adversarial loss against an all-real or all-fake target: "lsgan" (squared error) or "vanilla" (BCE)."""

    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        if mode not in ("lsgan", "vanilla"):
            raise ValueError(f"unknown GAN loss {mode!r}; use 'lsgan' or 'vanilla'")
        self.mode = mode

    def forward(self, scores: torch.Tensor, real: bool) -> torch.Tensor:
        scores = scores.float()
        target = torch.full_like(scores, 1.0 if real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(scores, target)
        return F.binary_cross_entropy_with_logits(scores, target)
