import io

import numpy as np
import pytest
from PIL import Image

from search.images import IMAGE_H, IMAGE_W, ImageInputError, decode_image, image_bytes_to_array, load_image_array


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb_model_array(mode):
    img = Image.new(mode, (120, 90))
    fmt = "TIFF" if mode in ("I;16", "I", "F", "CMYK") else "PNG"
    arr = image_bytes_to_array(encode(img, fmt))
    assert arr.shape == (IMAGE_H, IMAGE_W, 3) and arr.dtype == np.uint8


def test_transparent_png_is_composited_on_white():
    img = Image.new("RGBA", (60, 80), (255, 0, 0, 0))
    arr = image_bytes_to_array(encode(img, "PNG"))
    assert arr.min() == 255


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (80, 40), "white")
    img.paste((0, 0, 0), (0, 0, 40, 40))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(encode(img, "JPEG", exif=exif))
    assert out.size == (40, 80)
    assert np.asarray(out)[:20].mean() < 60  # the black half is now on top


def test_animated_gif_uses_first_frame():
    frames = [Image.new("P", (30, 40), i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue()).size == (30, 40)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not a readable image"),
    (b"<html><body>hi</body></html>", "not a readable image"),
    (b"%PDF-1.4\n%...", "not a readable image"),
    (b"\x00" * 100, "not a readable image"),
])
def test_non_images_are_refused(data, match):
    with pytest.raises(ImageInputError, match=match):
        decode_image(data)


def test_truncated_jpeg_is_refused():
    data = encode(Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageInputError):
        decode_image(data[: len(data) // 2])


def test_size_and_pixel_limits():
    data = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageInputError, match="pixels"):
        decode_image(data, max_pixels=1_000_000)
    with pytest.raises(ImageInputError, match="larger than"):
        decode_image(data, max_bytes=100)


def test_odd_aspect_is_letterboxed_on_white():
    arr = image_bytes_to_array(encode(Image.new("RGB", (200, 20), (0, 0, 0)), "PNG"))
    assert arr[0].min() == 255 and arr[IMAGE_H // 2].max() == 0


def test_load_image_array_marks_bad_files_and_caches(tmp_path):
    good = tmp_path / "a.jpg"
    Image.new("RGB", (60, 80), "red").save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not an image")
    images, ok = load_image_array([good, bad, tmp_path / "missing.jpg"], cache_dir=tmp_path / "cache")
    assert ok.tolist() == [True, False, False]
    assert images[1].min() == 255
    again, ok2 = load_image_array([good, bad, tmp_path / "missing.jpg"], cache_dir=tmp_path / "cache")
    assert np.array_equal(images, again) and ok2.tolist() == ok.tolist()
