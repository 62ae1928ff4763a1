"""What the frozen Image2Vec sees of every catalog photo, computed once per catalog and encoder.

The text model's photo side, the fused classifier and its image-only twin and the captioner all read the
encoder's descriptor of a photo (``models.image_encoder.frozen_descriptor``). ``catalog_descriptors`` computes
it for a split once and keeps it in the cache directory under the encoder's version, so a retrained encoder
(a new version) never serves old features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def _fingerprint(images: np.ndarray) -> str:
    """A short hash of the photos themselves (every 97th, whole), so another catalog of the same size differs."""
    sample = np.ascontiguousarray(np.asarray(images)[::97])
    return hashlib.sha256(sample.tobytes() + str(images.shape).encode()).hexdigest()[:12]


def catalog_descriptors(encoder_payload: dict, images: np.ndarray, cache_dir: Path | None, views: int = 1,
                        device: str = "cpu") -> np.ndarray:
    """float16 (views, N, D) descriptors of uint8 photos (N, 80, 60, 3) by this encoder (view 1: mirrored)."""
    from models.image_encoder import describe_array
    from models.train_encoder import load_encoder

    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"descriptors-{encoder_payload['version']}-{_fingerprint(images)}-{views}.npy"
        if path.is_file():
            cached = np.load(path, mmap_mode="r")
            if cached.shape[:2] == (views, len(images)):
                return cached
    encoder = load_encoder(encoder_payload, device)
    out = describe_array(encoder, images, device, views=views)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
    return out
