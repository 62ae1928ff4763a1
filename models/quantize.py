"""int8 inference for Image2Vec's CNN on a CPU.

On the 2 CPU cores here the CNN is most of a reindex and of a photo query's encoder stage. Its convolutions in
int8 (PyTorch's FX post-training static quantization, x86 engine: per-channel int8 weights, uint8 activations whose
ranges a histogram sets over calibration pictures) run at about 1.7x the float32 rate: a reindex 17-19 % faster.
What follows the CNN (pooling, the projection, the descriptors) stays in float. P@5 falls by about 0.001, so it is
opt-in (``ENCODER_INT8``; docs/benchmarks.md).

The calibration pictures travel in the encoder's checkpoint (``calibration``, uint8 (N, 80, 60, 3): validation
photos and sketches), so that every process that loads a checkpoint quantizes it the same way: the index and the
queries of one machine see the same network. A checkpoint without them, or a PyTorch without
``torch.ao.quantization`` (deprecated upstream in favour of torchao, present in the pinned release), is served in
float32.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from models.training import to_float_images

CALIBRATION_PHOTOS = 128
CALIBRATION_SKETCHES = 64


def _evenly(array: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` elements of ``array``, evenly spaced from its first to its last."""
    return np.asarray(array[np.linspace(0, len(array) - 1, min(n, len(array))).astype(int)], np.uint8)


def calibration_set(photos: np.ndarray, sketches: np.ndarray | None = None, n_photos: int = CALIBRATION_PHOTOS,
                    n_sketches: int = CALIBRATION_SKETCHES) -> np.ndarray:
    """Pictures to set the int8 ranges on, uint8 (N, 80, 60, 3): photos evenly spaced over ``photos`` (N, 80, 60, 3)
    and as many sketches (N, 80, 60) as queries bring them, grey on three channels."""
    picks = [_evenly(photos, n_photos)]
    if sketches is not None and len(sketches) and n_sketches:
        picks.append(np.repeat(_evenly(sketches, n_sketches)[..., None], 3, axis=-1))
    return np.ascontiguousarray(np.concatenate(picks))


def _engine() -> str | None:
    """PyTorch's int8 CPU engine here (``x86``, else ``fbgemm``), None without one or without FX quantization."""
    try:
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # noqa: F401
    except ImportError:
        return None
    return next((e for e in ("x86", "fbgemm") if e in torch.backends.quantized.supported_engines), None)


def int8_available() -> bool:
    return _engine() is not None


def is_int8(model: nn.Module) -> bool:
    """Whether ``model`` runs quantized convolutions (``quantize_cnn``; fused ones subclass the plain ones)."""
    from torch.ao.nn.quantized import Conv2d

    return any(isinstance(m, Conv2d) for m in model.modules())


def quantize_cnn(model: nn.Module, calibration: np.ndarray) -> nn.Module:
    """``model`` (an Image2Vec in eval mode, float32, unfolded) with its ``features`` in int8, in place.

    ``features`` becomes two quantized stages, all but the last stage and the last one, since the descriptors read
    the feature maps between them (``models.image_encoder.descriptor_of``): each takes and gives float tensors, so
    the rest of the network runs unchanged. About a second on 2 cores (the histograms), once per process."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = _engine()
    torch.backends.quantized.engine = engine
    model = model.cpu().float().eval()
    x = to_float_images(torch.from_numpy(np.ascontiguousarray(calibration))).contiguous(memory_format=torch.channels_last)
    front, last = model.features[:-1], model.features[-1]
    with warnings.catch_warnings():  # the deprecation notice, and the observers' note on reduce_range
        warnings.simplefilter("ignore")
        mapping = get_default_qconfig_mapping(engine)
        front = prepare_fx(front, mapping, (x[:1],))
        with torch.no_grad():
            middle = front(x)
        last = prepare_fx(last, mapping, (middle[:1],))
        with torch.no_grad():
            last(middle)
        model.features = nn.Sequential(convert_fx(front), convert_fx(last))
    return model.requires_grad_(False)
