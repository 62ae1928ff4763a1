"""Image decoding and the catalog's image array.

Every model sees images as ``uint8`` arrays of shape (H, W, 3) = (80, 60, 3),
the size of the catalog's photos. Other sizes are letterboxed onto white.

``decode_image`` is the one door for bytes from outside (uploads, catalog
files): format decided by decoding, a byte and a pixel limit against
decompression bombs, EXIF orientation applied, every mode (CMYK, palette,
16-bit, grey, alpha, animated) turned into RGB on white. Anything else raises
``ImageInputError`` with a message fit to show a user.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_H, IMAGE_W = 80, 60
ALLOWED_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


class ImageInputError(ValueError):
    """The bytes are not an image we accept; the message is safe to show."""


def decode_image(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
                 background: tuple[int, int, int] = (255, 255, 255), keep_alpha: bool = False) -> Image.Image:
    """Decode untrusted bytes into an RGB PIL image (first frame, EXIF-rotated).

    With ``keep_alpha`` an image with transparency comes back as RGBA (sketches
    drawn on a transparent canvas carry their strokes in the alpha channel).
    """
    if not data:
        raise ImageInputError("the file is empty")
    if len(data) > max_bytes:
        raise ImageInputError(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ALLOWED_FORMATS:
                raise ImageInputError(f"{img.format or 'this'} files are not accepted; use JPEG, PNG, GIF or WebP")
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageInputError("the image has no pixels")
            if width * height > max_pixels:
                raise ImageInputError(f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            if keep_alpha and (img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info):
                return img.convert("RGBA")
            return to_rgb(img, background)
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError("the image has too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise ImageInputError(f"the file is not a readable image ({type(exc).__name__})") from None


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited onto ``background``."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        img = Image.fromarray((arr / max(hi, 1.0) * 255.0).clip(0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-9) * 255.0).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def fit_to_model(img: Image.Image, size: tuple[int, int] = (IMAGE_W, IMAGE_H),
                 background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Letterbox an RGB image to the model's size; returns uint8 (H, W, 3)."""
    img = to_rgb(img, background)
    if img.size != size:
        img = ImageOps.pad(img, size, method=Image.Resampling.BILINEAR, color=background)
    return np.asarray(img, dtype=np.uint8)


def image_bytes_to_array(data: bytes, **limits) -> np.ndarray:
    return fit_to_model(decode_image(data, **limits))


def _cache_key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha1()
    for p in paths:
        try:
            st = p.stat()
            digest.update(f"{p}|{st.st_size}|{int(st.st_mtime)}\n".encode())
        except OSError:
            digest.update(f"{p}|missing\n".encode())
    return digest.hexdigest()[:16]


def load_image_array(paths: Sequence[Path], cache_dir: Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode catalog images into one (N, 80, 60, 3) uint8 array plus an ``ok`` mask.

    Unreadable or missing files give a white image and ``ok=False``. With
    ``cache_dir`` the arrays are kept as ``.npy`` keyed by paths, sizes and
    mtimes, so a second call costs a memory map instead of 44k decodes.
    """
    paths = [Path(p) for p in paths]
    cache = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = _cache_key(paths)
        cache = (cache_dir / f"images-{key}.npy", cache_dir / f"images-{key}.ok.npy")
        if cache[0].is_file() and cache[1].is_file():
            return np.load(cache[0], mmap_mode="r"), np.load(cache[1])
    out = np.full((len(paths), IMAGE_H, IMAGE_W, 3), 255, dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        try:
            out[i] = image_bytes_to_array(p.read_bytes())
            ok[i] = True
        except (OSError, ImageInputError):
            pass
        if progress and (i % 500 == 0 or i == len(paths) - 1):
            progress(i + 1, len(paths))
    if cache is not None:
        tmp = cache[0].with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache[0])
        np.save(cache[1], ok)
    return out, ok
