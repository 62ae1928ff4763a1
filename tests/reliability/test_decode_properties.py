"""Property tests: whatever bytes arrive, the decode and normalise path raises nothing but
``ImageInputError`` (the one exception that becomes a 400), and every valid picture, however
odd its mode, size or format, is accepted and comes out in the models' shape."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from search.images import IMAGE_H, IMAGE_W, ImageInputError, decode_image, image_bytes_to_array
from search.sketches import normalise_sketch

EXAMPLES = 500  # per property; 4 properties -> 2,000 generated inputs (a few seconds)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# format -> modes it can store (PIL may store some of them as another mode, which is the point)
MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P", "RGB"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr", "LAB"],
}
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
          b"BM", b"II*\x00", b"MM\x00*", b"<svg", b"%PDF-", b"\x00\x00\x01\x00"]


def run_all(data: bytes) -> list[str]:
    """Every entry point of the upload path on ``data``: 'ok' or 'refused' for each; anything else fails."""
    outcomes = []
    try:
        img = decode_image(data)
        assert img.mode == "RGB" and img.width >= 1 and img.height >= 1
        outcomes.append("ok")
    except ImageInputError as exc:
        assert str(exc)
        outcomes.append("refused")
    try:
        arr = image_bytes_to_array(data)
        assert arr.shape == (IMAGE_H, IMAGE_W, 3) and arr.dtype == np.uint8
        outcomes.append("ok")
    except ImageInputError:
        outcomes.append("refused")
    try:
        sketch = normalise_sketch(decode_image(data, keep_alpha=True))
        assert sketch.shape == (IMAGE_H, IMAGE_W) and sketch.dtype == np.uint8
        outcomes.append("ok")
    except ImageInputError:  # SketchInputError (nothing drawn) is one
        outcomes.append("refused")
    return outcomes


@st.composite
def odd_images(draw) -> bytes:
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    if draw(st.booleans()):  # very thin or very flat
        size = (size[0], draw(st.integers(1, 3))) if draw(st.booleans()) else (draw(st.integers(1, 3)), size[1])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    if draw(st.booleans()):  # a drawing: dark strokes on white instead of noise
        canvas = np.full((size[1], size[0], 4), 255, np.uint8)
        canvas[size[1] // 4: 3 * size[1] // 4 + 1, size[0] // 3] = (0, 0, 0, 255)
        base = Image.fromarray(canvas, "RGBA")
    img = base.convert("RGB").convert(mode) if mode not in ("RGBA", "LA") else base.convert(mode)
    kw: dict = {}
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(1, 8))  # every EXIF orientation
        kw["exif"] = exif.tobytes()
    if mode == "P" and fmt in ("PNG", "GIF") and draw(st.booleans()):
        kw["transparency"] = draw(st.integers(0, 255))
    if mode in ("L", "RGB") and fmt == "PNG" and draw(st.booleans()):
        kw["transparency"] = 0 if mode == "L" else (0, 0, 0)
    frames = draw(st.integers(1, 3)) if fmt in ("GIF", "PNG", "WEBP") else 1
    if frames > 1:
        kw.update(save_all=True, append_images=[img.copy() for _ in range(frames - 1)])
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data):
    run_all(data)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_magic_numbers_with_garbage_are_refused_cleanly(magic, tail):
    run_all(magic + tail)


@FUZZ
@given(odd_images())
def test_valid_odd_images_are_accepted(data):
    outcomes = run_all(data)
    assert outcomes[:2] == ["ok", "ok"], "a valid picture was refused"


@FUZZ
@given(odd_images(), st.data())
def test_damaged_images_never_escape(data, choice):
    """A valid picture truncated or with bytes overwritten: the parsers' error paths."""
    blob = bytearray(data)
    if choice.draw(st.booleans()):
        blob = blob[: choice.draw(st.integers(0, len(blob)))]
    for _ in range(choice.draw(st.integers(1, 8))):
        if blob:
            blob[choice.draw(st.integers(0, len(blob) - 1))] = choice.draw(st.integers(0, 255))
    run_all(bytes(blob))
