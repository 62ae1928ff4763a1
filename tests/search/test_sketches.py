"""Training sketches from photos, and user drawings brought into the same form."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from search.images import ImageInputError
from search.sketches import SketchInputError, normalise_sketch, photo_to_sketch, save_sketch_sheet


def product_photos(n: int) -> np.ndarray:
    """White photos with a coloured garment-like shape and an inner stripe."""
    rng = np.random.default_rng(0)
    photos = np.full((n, 80, 60, 3), 255, np.uint8)
    for i in range(n):
        img = Image.fromarray(photos[i])
        draw = ImageDraw.Draw(img)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        top, bottom = int(rng.integers(5, 15)), int(rng.integers(65, 76))
        draw.polygon([(15, top), (45, top), (52, 30), (45, bottom), (15, bottom), (8, 30)], fill=colour)
        draw.line([(20, 45), (40, 45)], fill=(250, 250, 250), width=2)
        photos[i] = np.asarray(img)
    return photos


def drawing(size=(600, 800), box=(100, 100, 500, 700), width=4, ink=0, paper=255, mode="L") -> Image.Image:
    """A user drawing: a T-shirt-ish outline with a neckline, on its own canvas."""
    img = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    outline = [(x0 + 0.3 * w, y0), (x0 + 0.7 * w, y0), (x1, y0 + 0.25 * h), (x0 + 0.8 * w, y0 + 0.35 * h),
               (x0 + 0.8 * w, y1), (x0 + 0.2 * w, y1), (x0 + 0.2 * w, y0 + 0.35 * h), (x0, y0 + 0.25 * h)]
    draw.line(outline + [outline[0]], fill=ink, width=width, joint="curve")
    draw.arc([x0 + 0.38 * w, y0 - 0.1 * h, x0 + 0.62 * w, y0 + 0.1 * h], 0, 180, fill=ink, width=width)
    return img


def ink(sketch: np.ndarray) -> np.ndarray:
    return sketch < 128


def grow(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def similar(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two sketches' strokes, each grown by a pixel (strokes may move by one)."""
    ga, gb = grow(ink(a)), grow(ink(b))
    return (ga & gb).sum() / max(1, (ga | gb).sum())


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return normalise_sketch(drawing())


def test_photo_to_sketch_gives_thin_dark_lines_on_white():
    photos = product_photos(8)
    sketches = photo_to_sketch(photos, seed=0)
    assert sketches.shape == (8, 80, 60) and sketches.dtype == np.uint8
    white = (sketches > 200).mean(axis=(1, 2))
    assert (white > 0.7).all() and (white < 0.99).all()
    assert (sketches.min(axis=(1, 2)) < 60).all()  # strokes are dark
    np.testing.assert_array_equal(sketches, photo_to_sketch(photos, seed=0))
    assert not np.array_equal(sketches, photo_to_sketch(photos, seed=1))


def test_photo_to_sketch_refuses_other_shapes():
    with pytest.raises(ValueError):
        photo_to_sketch(np.zeros((2, 64, 64, 3), np.uint8))


def test_normalised_drawing_fills_the_frame_in_the_training_style(reference):
    assert reference.shape == (80, 60) and reference.dtype == np.uint8
    assert (reference > 200).mean() > 0.8
    rows, cols = np.nonzero(ink(reference))
    assert rows.max() - rows.min() > 60  # the tall drawing fills the height...
    assert abs((cols.min() + cols.max()) / 2 - 29.5) < 3  # ...and is centred


def test_white_on_black_is_inverted(reference):
    assert similar(normalise_sketch(drawing(ink=255, paper=0)), reference) > 0.8


def test_transparent_background_takes_strokes_from_alpha(reference):
    black = drawing(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    white = drawing(ink=(255, 255, 255, 255), paper=(0, 0, 0, 0), mode="RGBA")
    assert similar(normalise_sketch(black), reference) > 0.8
    assert similar(normalise_sketch(white), reference) > 0.8


def test_tiny_drawing_in_the_corner_of_a_huge_canvas(reference):
    tiny = drawing(size=(3000, 3000), box=(2700, 40, 2780, 160), width=2)
    assert similar(normalise_sketch(tiny), reference) > 0.6


def test_thick_strokes_come_out_as_thin_as_thin_ones(reference):
    thick = normalise_sketch(drawing(width=45))
    assert similar(thick, reference) > 0.6
    assert ink(thick).sum() < 1.5 * ink(reference).sum()


def photographed(page: Image.Image, light: str, noise: float = 5.0) -> Image.Image:
    """A drawing on paper as a phone sees it: the light falls off across the page (``left``: a shadow from the
    left, down to 35 %; ``corner``: a dark patch in one corner), with the camera's grain."""
    grey = np.asarray(page.convert("L"), np.float32)
    h, w = grey.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if light == "left":
        lit = 0.35 + 0.65 * xx / w
    else:
        lit = 1.0 - 0.55 * np.exp(-(((xx - 0.15 * w) / (0.25 * w)) ** 2 + ((yy - 0.85 * h) / (0.2 * h)) ** 2))
    shot = 0.93 * grey * lit + np.random.default_rng(0).normal(0.0, noise, grey.shape)
    return Image.fromarray(np.clip(shot, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("light", ["left", "corner"])
def test_a_photographed_page_in_uneven_light_gives_the_drawing(reference, light):
    # read against the page's mean brightness, the shadow would be ink and the lit strokes paper
    assert similar(normalise_sketch(photographed(drawing(width=6), light)), reference) > 0.8


def test_a_faint_pencil_drawing_is_found_whole(reference):
    pencil = normalise_sketch(drawing(width=4, ink=165, paper=235))  # strokes 30 % darker than the paper
    assert similar(pencil, reference) > 0.8


def test_a_blank_photographed_page_is_empty_not_its_shadow():
    with pytest.raises(SketchInputError, match="empty"):
        normalise_sketch(photographed(Image.new("L", (600, 800), 255), "left"))


def test_empty_or_nearly_empty_drawings_are_refused():
    with pytest.raises(SketchInputError, match="empty"):
        normalise_sketch(Image.new("RGB", (400, 300), "white"))
    with pytest.raises(SketchInputError):
        normalise_sketch(Image.new("RGBA", (400, 300), (0, 0, 0, 0)))
    dot = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(dot).ellipse([200, 150, 210, 160], fill=0)
    with pytest.raises(ImageInputError):
        normalise_sketch(dot)


def test_sketch_sheet_is_a_png(tmp_path):
    photos = product_photos(5)
    path = save_sketch_sheet(photos, photo_to_sketch(photos), tmp_path / "sheet.png", n=5)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > img.height


def bag_photos(scale: float) -> np.ndarray:
    """A dark bag with a handle loop (background seen through it), its size ``scale`` of a full frame."""
    img = Image.new("RGB", (60, 80), "white")
    draw = ImageDraw.Draw(img)
    cx, cy = 30, 40
    w, h = 44 * scale, 60 * scale

    def box(x0, y0, x1, y1):  # fractions of the bag's box -> pixels
        return [cx + (x0 - 0.5) * w, cy + (y0 - 0.5) * h, cx + (x1 - 0.5) * w, cy + (y1 - 0.5) * h]

    draw.ellipse(box(0.2, 0.0, 0.8, 0.7), fill=(60, 40, 30))  # the handle...
    draw.ellipse(box(0.3, 0.1, 0.7, 0.6), fill="white")  # ...with its loop
    draw.rectangle(box(0.0, 0.4, 1.0, 1.0), fill=(60, 40, 30))
    return np.asarray(img)[None]


def test_a_handle_loop_is_drawn_as_people_draw_it():
    photo = bag_photos(1.0)
    sketch = photo_to_sketch(photo, seed=0)[0]
    # Ink around the loop's inside (between the handle and the body), not only the outline.
    loop = ink(sketch)[14:30, 22:38]
    assert loop.any()


def test_framed_sketches_do_not_tell_the_products_size_or_place():
    small, large = photo_to_sketch(bag_photos(0.65), seed=3), photo_to_sketch(bag_photos(1.0), seed=3)
    assert ink(small[0]).sum() < 0.7 * ink(large[0]).sum()  # aligned with the photos: sizes differ
    small_f = photo_to_sketch(bag_photos(0.65), seed=3, framed=True)[0]
    large_f = photo_to_sketch(bag_photos(1.0), seed=3, framed=True)[0]
    assert similar(small_f, large_f) > 0.5
    rows, _ = np.nonzero(ink(small_f))
    assert rows.max() - rows.min() > 60  # fills the frame like a normalised user drawing
    # A framed training sketch and a user's upload of that same sketch come out alike.
    assert similar(small_f, normalise_sketch(Image.fromarray(small[0]))) > 0.5



SKIN = (224, 170, 140)  # a face in the YCrCb skin box


def cap_on_a_head() -> np.ndarray:
    """A catalog-like photo of a cap worn on a head: a blue cap over a skin-coloured face and neck, on white."""
    img = Image.new("RGB", (60, 80), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((15, 22, 45, 62), fill=SKIN)  # the face
    draw.rectangle((24, 55, 36, 79), fill=SKIN)  # the neck, down to the frame
    draw.chord((12, 6, 48, 42), 180, 360, fill=(30, 60, 170))  # the crown
    draw.rectangle((10, 22, 52, 27), fill=(30, 60, 170))  # the brim
    return np.asarray(img)[None]


@pytest.mark.parametrize("style", ["clean", "doodle"])
@pytest.mark.parametrize("seed", range(3))
def test_a_worn_item_is_drawn_without_its_wearer(seed, style, monkeypatch):
    from search import sketches

    monkeypatch.setattr(sketches, "CLEAN_P", 1.0)  # every drawing in a person's style: clean, or a doodle
    doodles = 1.0 if style == "doodle" else 0.0
    photo = cap_on_a_head()
    worn = photo_to_sketch(photo, seed=seed, worn=np.array([True]), doodles=doodles)[0]
    assert ink(worn)[:30].sum() > 20  # the cap is drawn
    assert ink(worn)[36:].sum() == 0  # the face and neck below it are not
    plain = photo_to_sketch(photo, seed=seed, doodles=doodles)[0]
    assert ink(plain)[36:].sum() > 20  # without the flag the head's outline is drawn (an item on white)


def test_sketch_styles_are_deterministic_for_a_seed():
    photos = np.concatenate([product_photos(12), cap_on_a_head()])
    worn = np.array([False] * 12 + [True])
    first = photo_to_sketch(photos, seed=5, framed=True, worn=worn, doodles=0.3)
    np.testing.assert_array_equal(first, photo_to_sketch(photos, seed=5, framed=True, worn=worn, doodles=0.3))
    assert not np.array_equal(first, photo_to_sketch(photos, seed=6, framed=True, worn=worn, doodles=0.3))
    # every style draws something of every photo
    for doodles in (0.0, 1.0):
        drawn = photo_to_sketch(photos, seed=5, framed=True, worn=worn, doodles=doodles)
        assert all(ink(s).sum() > 30 for s in drawn)


def test_a_doodle_is_a_few_strokes_of_the_outline(monkeypatch):
    from search import sketches

    photos = product_photos(8)
    doodles = photo_to_sketch(photos, seed=2, doodles=1.0)
    monkeypatch.setattr(sketches, "CLEAN_P", 0.0)
    edges = photo_to_sketch(photos, seed=2)
    # another drawing than the photo's edge map, with strayed corners and open ends, but of the same outline
    overlap = [similar(d, e) for d, e in zip(doodles, edges, strict=True)]
    assert max(overlap) < 0.9
    assert np.mean(overlap) > 0.2


def zhang_suen_by_the_book(mask: np.ndarray) -> np.ndarray:
    """Zhang and Suen (1984), pixel by pixel: the reference ``_thin``'s table lookups must agree with."""
    img = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            remove = []
            for y in range(1, img.shape[0] - 1):
                for x in range(1, img.shape[1] - 1):
                    if not img[y, x]:
                        continue
                    # P2..P9: north, then clockwise
                    p = [img[y - 1, x], img[y - 1, x + 1], img[y, x + 1], img[y + 1, x + 1],
                         img[y + 1, x], img[y + 1, x - 1], img[y, x - 1], img[y - 1, x - 1]]
                    transitions = sum(p[k] == 0 and p[(k + 1) % 8] == 1 for k in range(8))
                    p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
                    cond = (p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0) if step == 0 else \
                        (p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0)
                    if 2 <= sum(p) <= 6 and transitions == 1 and cond:
                        remove.append((y, x))
            for y, x in remove:
                img[y, x] = 0
            changed |= bool(remove)
    return img[1:-1, 1:-1].astype(bool)


def test_thinning_is_zhang_suen():
    from search.sketches import _thin

    rng = np.random.default_rng(3)
    masks = [rng.random((30, 24)) < 0.45, np.ones((12, 40), bool)]
    strokes = Image.new("L", (60, 45), 0)
    ImageDraw.Draw(strokes).line([(3, 40), (30, 4), (57, 40), (10, 22)], fill=1, width=6)
    masks.append(np.asarray(strokes).astype(bool))
    for mask in masks:
        assert np.array_equal(_thin(mask), zhang_suen_by_the_book(mask))
    assert _thin(masks[-1]).sum() < 0.4 * masks[-1].sum()  # it did thin
