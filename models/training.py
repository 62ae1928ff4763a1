"""Shared pieces of every training loop: device choice, seeding, batch
augmentation on tensors, and resumable checkpoints between epochs."""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def pick_device(name: str | None = None) -> torch.device:
    """'cpu', 'cuda' or None/'auto' (CUDA when present). Asking for CUDA without one is an error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine")
    return torch.device(name)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where autocast to bf16 pays off:
    on the 2 Zen 4 cores here the encoder trains about twice as fast as in float32 (bench: ``train`` section)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_for(device: torch.device, training: bool = True):
    """The mixed-precision context of a training step: bf16 on a GPU, and on a CPU that computes it natively
    when ``training`` (emulated bf16 on an older CPU is slower than float32). Inference: ``inference_precision``."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=training and cpu_has_bf16())


def inference_precision(device: torch.device | str):
    """The precision the CNNs infer in: bf16 where the hardware computes it natively (a GPU, or a CPU with
    AVX-512 BF16 or AMX: about 3x the float32 rate over a batch of catalog photos on the 2 cores here), else
    float32. The index and the queries of one machine take the same path; with the cpu-profile encoder the two
    precisions' vectors of a photo agree to a cosine of 0.99999 (measured), so an index built on one kind of
    machine serves the queries of the other. The same precision as a training step."""
    return autocast_for(torch.device(device))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_float_images(batch_uint8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [-1, 1]."""
    return batch_uint8.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def for_inference(model: torch.nn.Module, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A loaded network ready to answer: on ``device``, eval mode, convolution weights channels-last.

    Images reach the networks channels-last already (``to_float_images`` permutes NHWC bytes); with the
    weights in the same layout oneDNN takes its fast path: on 2 CPU cores the full-profile CNN embeds a
    photo and its mirror image in 17.6 ms on one thread instead of 26.8 (bench: ``embed`` section)."""
    return model.to(device).to(memory_format=torch.channels_last).eval()


def for_serving(model: torch.nn.Module, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A loaded CNN in the form that answers fastest, outputs equal to rounding: each BatchNorm2d that follows
    a Conv2d in a Sequential folded into that convolution's weights and bias (it becomes an Identity), and,
    where inference runs in bf16 (``inference_precision``), the convolutions' weights kept in bf16, so autocast
    does not cast them again on every call. On the 2 cores here: a reindex's pass 373 -> 421 photos a second,
    a photo and its mirror image 6.5 -> 5.5 ms on one thread (docs/benchmarks.md). Its convolutions must then
    run inside ``inference_precision``, and its state dict no longer fits its class: never save or train it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], torch.nn.Conv2d) and isinstance(seq[i + 1], torch.nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = torch.nn.Identity()
    device = torch.device(device)
    if device.type == "cuda" or cpu_has_bf16():  # the devices where ``inference_precision`` is bf16
        for conv in [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]:
            conv.to(torch.bfloat16)
    return model.to(memory_format=torch.channels_last)


def in_eval_mode(model: torch.nn.Module) -> torch.nn.Module:
    """``model.eval()`` where a module of it is still training, else nothing: a served network is in eval mode
    already (``for_inference``), and ``eval()`` walks and sets every module on each call, about 0.5 ms for the
    CNN, paid twice by every photo query."""
    if any(m.training for m in model.modules()):
        model.eval()
    return model


def match_thread_count() -> None:
    """Size this thread's OpenMP team as ``torch.set_num_threads`` sized the process's. OpenMP keeps the size per
    thread and oneDNN's convolutions read it directly, so a thread started after ``set_num_threads(1)`` convolves on
    every core beside the thread that started it: the GAN drawn beside the encoder took 17.5 ms instead of 7.7 on 2
    cores (docs/benchmarks.md). Call it first in a thread that runs a network."""
    torch.set_num_threads(torch.get_num_threads())


def inference_batch(device: str | torch.device, flip_average: bool = False) -> int:
    """Images per chunk when embedding many: small on the CPU, where a forward batch of 32 photos stays in
    cache (the full-profile CNN: 284 images/s at 32 against 155 at 512 on 2 cores, channels-last), larger on
    a GPU. With ``flip_average`` each chunk runs twice as many images (both views)."""
    batch = 32 if torch.device(device).type == "cpu" else 512
    return batch // 2 if flip_average else batch


def augment_images(x: torch.Tensor, generator: torch.Generator | None = None, *, max_shift: float = 0.08,
                   scale_range: tuple[float, float] = (0.9, 1.1), flip: bool = True,
                   jitter: float = 0.1) -> torch.Tensor:
    """Random flip, shift/zoom (white fill) and brightness/contrast jitter on a float batch in [-1, 1]."""
    n = x.shape[0]
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, device="cpu", generator=generator).to(dev)

    scale = scale_range[0] + (scale_range[1] - scale_range[0]) * rand(n)
    tx = (rand(n) * 2 - 1) * max_shift * 2
    ty = (rand(n) * 2 - 1) * max_shift * 2
    sign = torch.where(rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=dev)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sign / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Shift to [0, 2] so that zero padding means white (1.0 after shifting back).
    out = F.grid_sample(x - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1.0
    if jitter:
        contrast = 1.0 + (rand(n, 1, 1, 1) * 2 - 1) * jitter
        bright = (rand(n, 1, 1, 1) * 2 - 1) * jitter
        out = ((out - 1.0) * contrast + 1.0 + bright).clamp_(-1.0, 1.0)
    return out


class EpochCheckpointer:
    """Keeps a ``<path>.partial`` file between epochs so an interrupted run resumes."""

    def __init__(self, final_path: Path):
        self.final_path = Path(final_path)
        self.partial_path = self.final_path.with_name(self.final_path.name + ".partial")

    def load(self, signature: dict[str, Any]) -> dict[str, Any] | None:
        if not self.partial_path.is_file():
            return None
        state = torch.load(self.partial_path, map_location="cpu", weights_only=False)
        if state.get("signature") != signature:
            return None  # another config or profile: start over
        return state

    def save(self, signature: dict[str, Any], **state: Any) -> None:
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.partial_path.with_name(self.partial_path.name + ".tmp")
        torch.save({"signature": signature, **state}, tmp)
        tmp.replace(self.partial_path)

    def finish(self) -> None:
        self.partial_path.unlink(missing_ok=True)


class BestEpoch:
    """Model selection on the validation split: the weights of the epoch with the highest ``key`` (lowest with
    ``lower``).

    Kept in memory (a CPU copy) and in the resumable partial checkpoint (``to_dict``/``load``).
    """

    def __init__(self, key: str, lower: bool = False):
        self.key = key
        self.sign = -1.0 if lower else 1.0  # lower: the lowest figure wins (a loss)
        self.value = float("-inf") if not lower else float("inf")
        self.epoch = 0
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, model: torch.nn.Module, metrics: dict[str, float], epoch: int) -> None:
        value = metrics.get(self.key)
        if value is not None and value == value and self.sign * value > self.sign * self.value:  # NaN never wins
            self.value, self.epoch = float(value), epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "epoch": self.epoch, "state": self.state}

    def load(self, d: dict[str, Any] | None) -> None:
        if d:
            self.value, self.epoch, self.state = d["value"], d["epoch"], d["state"]


class Timer:
    def __init__(self, already: float = 0.0):
        self.start = time.perf_counter() - already

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
