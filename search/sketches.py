"""Edge-map sketches: training sketches made from catalog photos, and user drawings made to look like them.

Both roads end in the same renderer, so what the models learn from and what
people draw meet in one style: dark strokes (0) on white (255), uint8
(80, 60), about 1-1.5 px wide at the catalog's size.

``photo_to_sketch`` draws at twice the catalog size (160x120) and shrinks the
result with area averaging, which gives anti-aliased strokes of sub-pixel
width control:

* **outer contour**: the product's silhouette against the light background
  (colour distance from the border's median colour, holes filled), outlined
  and simplified to a polyline, the way people draw an outline;
* **main inner lines**: Canny on a bilateral-smoothed grey image, kept only
  inside the silhouette (away from its edge, so the outline is not doubled),
  with short edge fragments (texture, prints, fabric folds) removed and
  edges on skin (faces, hands, arms of a person wearing the garment) left
  out;
* **holes**: background seen through the product (a handle's loop) drawn
  as its own outline;
* **two styles** per (seed, index): the *edge* style (Canny thresholds, a
  smooth random displacement of every stroke of about a pixel, stroke gaps,
  dropped inner lines, stroke width) and, for ``CLEAN_P`` of the drawings,
  the *clean* style of a person at a canvas (a smoothed outline simplified to
  a few long lines and curves, at most three inner lines, unbroken strokes),
  so a model does not learn one exact edge style;
* **framed** (``framed=True``, the encoder's training sketches and
  evaluation's queries): cropped to the strokes and redrawn exactly as an
  uploaded drawing is (``frame_strokes``), so a model never learns from the
  product's size or place in the photo, which a drawing cannot tell.

``normalise_sketch`` turns any drawing (canvas PNG with alpha, white on black,
huge canvas, marker-thick strokes) into the same form: ink mask, specks
removed, crop to the strokes with the catalog's typical margin, pad to 60:80,
thin to one-pixel centre lines and redraw them with the renderer's width.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from search.images import IMAGE_H, IMAGE_W, ImageInputError

SCALE = 2  # drawing resolution relative to the catalog's 80x60
WORK_H, WORK_W = IMAGE_H * SCALE, IMAGE_W * SCALE
# Stroke widths (pixels at the drawing resolution) and how often each is drawn.
STROKE_WIDTHS = (1, 2, 3)
STROKE_WIDTH_P = (0.4, 0.45, 0.15)
USER_STROKE_WIDTH = 2
# Margin around a user's strokes, as a fraction of the padded frame's height:
# the median empty band above/below the product in catalog sketches.
USER_MARGIN = 0.06
# A user's drawing: how dark a pixel must be, relative to the paper around it, to count as a stroke (a pen's; for
# a pencil's, whose cores are lighter than FAINT_CORES, down to FAINT_INK); and how uneven the paper's light may be
# before it is read locally (a photographed page), as a share of white.
INK = 0.35
FAINT_CORES = 0.5
FAINT_INK = 0.15
PAPER_CELLS = 48
PAPER_UNEVEN = 0.12
FOREGROUND_DIFF = 12  # colour distance from the background that counts as product
CANNY_HIGH = (50.0, 95.0)  # range of Canny's high threshold (low = 0.4 x high)
MIN_LINE = (12, 22)  # range of the shortest inner line kept, pixels at the drawing resolution
TEXTURE_DENSITY = 0.25  # share of edge pixels in an 11x11 window above which edges count as texture
# Share of sketches drawn in the clean style of a person's drawing: a smoothed, simplified outline, at most a
# few long inner lines, no gaps, the user renderer's stroke width (see ``_sketch_one``).
CLEAN_P = 0.4
MIN_HOLE = 14  # catalog pixels: the smallest background patch inside a silhouette drawn as a hole
CLEAN_EPS = (1.5, 4.0)  # range of the outline's simplification tolerance in that style, pixels at 2x
# Share of the encoder's training sketches drawn as a doodle (``_doodle``), out of the clean style's share: what a
# person draws of the thing in twenty seconds. Other drawings (evaluation's queries, the GAN's pairs) keep the
# edge and clean styles alone.
DOODLE_P = 0.2
DOODLE_EPS = (0.02, 0.055)  # the outline's simplification tolerance, as a share of the silhouette's longer side
DOODLE_JITTER = 0.012  # how far a doodle's corners stray, as a share of that side


class SketchInputError(ImageInputError):
    """A drawing that cannot be used as a query (empty, nothing but specks)."""


# --------------------------------------------------------------------------- rendering


def _render(lines: np.ndarray, width: int) -> np.ndarray:
    """Binary line map at the drawing resolution -> uint8 (80, 60) dark strokes on white."""
    ink = lines.astype(np.float32)
    if width > 1:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    return _render_ink(ink)


def _render_ink(ink: np.ndarray) -> np.ndarray:
    """Float ink in [0, 1] at the drawing resolution -> uint8 (80, 60)."""
    small = cv2.resize(ink, (IMAGE_W, IMAGE_H), interpolation=cv2.INTER_AREA)
    # A one-pixel line at 2x covers half of a catalog pixel: gain 2 makes it black.
    return (255.0 * (1.0 - np.clip(small * 2.0, 0.0, 1.0))).round().astype(np.uint8)


def _remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


# --------------------------------------------------------------------------- photos -> sketches


def _fill(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Outer components of a uint8 mask with their holes filled; tiny components dropped."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(mask)
    big = [c for c in contours if cv2.contourArea(c) >= min_area]
    if big:
        cv2.drawContours(out, big, -1, 1, thickness=cv2.FILLED)
    return out


def _foreground(images: np.ndarray) -> np.ndarray:
    """Rough foreground masks (N, 80, 60) bool: colour distance from each photo's background.

    The background of a row runs linearly from its left to its right border
    pixel (studio shots are often vignetted grey), except where a border pixel
    is far from the photo's median border colour (the product touches it).
    """
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    k = border.shape[1] // 2
    median = np.partition(border, k, axis=1)[:, k].astype(np.float32)[:, None, :]  # (N, 1, 3)
    sides = []
    for side in (images[:, :, 0], images[:, :, -1]):  # (N, 80, 3)
        side = side.astype(np.float32)
        off = np.abs(side - median).max(axis=2, keepdims=True) > 40
        sides.append(np.where(off, median, side))
    ramp = np.linspace(0.0, 1.0, IMAGE_W, dtype=np.float32)[None, None, :, None]
    bg = sides[0][:, :, None, :] * (1.0 - ramp) + sides[1][:, :, None, :] * ramp
    # Darker than the background in some channel, or much brighter: a vignette's lighter centre is not product.
    diff = images.astype(np.float32) - bg
    return ((-diff).max(axis=3) > FOREGROUND_DIFF) | (diff.max(axis=3) > 3 * FOREGROUND_DIFF)


def _skin(images: np.ndarray) -> np.ndarray:
    """Skin masks (N, 80, 60) bool by the usual YCrCb box: faces and arms of models wearing a garment."""
    n = len(images)
    ycrcb = cv2.cvtColor(images.reshape(n * IMAGE_H, IMAGE_W, 3), cv2.COLOR_RGB2YCrCb).reshape(images.shape)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= 138) & (cr <= 173) & (cb >= 77) & (cb <= 125)


_GRID = np.meshgrid(np.arange(WORK_W, dtype=np.float32), np.arange(WORK_H, dtype=np.float32))
_ELLIPSE3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_ELLIPSE5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _wobble(ink: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Move strokes by a smooth random field of about ``amount`` pixels (a hand is not a ruler)."""
    field = rng.normal(0.0, amount, size=(2, 4, 3)).astype(np.float32)
    dx = cv2.resize(field[0], (WORK_W, WORK_H), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(field[1], (WORK_W, WORK_H), interpolation=cv2.INTER_CUBIC)
    return cv2.remap(ink, _GRID[0] + dx, _GRID[1] + dy, cv2.INTER_LINEAR, borderValue=0)


def _erase_gaps(lines: np.ndarray, points: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Break the outline at ``count`` random ``points`` (K, 2), in place: people lift the pen."""
    if count == 0 or len(points) == 0:
        return
    for k in rng.integers(0, len(points), size=count):
        x, y = points[k]
        cv2.circle(lines, (int(x), int(y)), int(rng.integers(2, 5)), 0, thickness=cv2.FILLED)


def _holes(fg: np.ndarray, sil: np.ndarray) -> list[np.ndarray]:
    """Outlines (at the drawing size) of the background seen through the product: a handle's loop, a strap's.

    The silhouette has its holes filled (a product's light patches are not
    background); a hole that is large and compact is drawn, as people draw it.
    """
    hole = (sil > 0) & (fg == 0)
    hole = cv2.morphologyEx(hole.astype(np.uint8), cv2.MORPH_OPEN, _ELLIPSE3)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hole, connectivity=4)
    out = []
    for k in range(1, n):
        area, w, h = stats[k, cv2.CC_STAT_AREA], stats[k, cv2.CC_STAT_WIDTH], stats[k, cv2.CC_STAT_HEIGHT]
        if area >= MIN_HOLE and area >= 0.4 * w * h:
            up = cv2.resize((labels == k).astype(np.float32), (WORK_W, WORK_H), interpolation=cv2.INTER_LINEAR)
            found, _ = cv2.findContours((up > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            out.extend(found)
    return out


def _smooth_closed(contour: np.ndarray, sigma: float) -> np.ndarray:
    """A closed contour (K, 1, 2) with its points averaged along the curve (a hand's smooth line, not pixel steps)."""
    pts = contour.reshape(-1, 2).astype(np.float32)
    half = int(3 * sigma)
    if len(pts) < 2 * half + 3:
        return contour
    kernel = cv2.getGaussianKernel(2 * half + 1, sigma).ravel().astype(np.float32)
    wrapped = np.concatenate([pts[-half:], pts, pts[:half]])
    smooth = np.stack([np.convolve(wrapped[:, d], kernel, mode="valid") for d in (0, 1)], axis=1)
    return smooth.round().astype(np.int32).reshape(-1, 1, 2)


def _without_wearer(fg: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The silhouette of a worn item without the person wearing it (uint8 masks at the catalog size).

    Skin (face, arms, legs) is cut out, and of what is left the large parts are kept: a cap without the head
    under it, briefs without the torso, a pair of socks without the legs. A product that is itself mostly
    skin-coloured (tan leather) keeps its whole silhouette.
    """
    person = cv2.dilate(cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_CLOSE, _ELLIPSE5), _ELLIPSE3)
    if person.sum() < 0.08 * max(1, int(fg.sum())):
        return fg
    rest = cv2.morphologyEx(((fg > 0) & (person == 0)).astype(np.uint8), cv2.MORPH_OPEN, _ELLIPSE3)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)
    if n <= 1:
        return fg
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.max() < 0.15 * fg.sum():
        return fg
    keep = np.zeros(n, bool)
    keep[1:] = areas >= 0.3 * areas.max()
    return keep[labels].astype(np.uint8)


def _doodle(contours: list[np.ndarray], inner: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A doodle at the drawing resolution: the outline as a few hasty strokes of a handful of corners each,
    strays, overshoots and open ends, and at most two inner lines, as simplified."""
    lines = np.zeros((WORK_H, WORK_W), np.uint8)
    pts = np.concatenate([c.reshape(-1, 2) for c in contours]) if contours else np.zeros((0, 2))
    if len(pts) < 3:
        return lines
    side = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 4))
    eps = float(rng.uniform(*DOODLE_EPS)) * side

    def stroke(points: np.ndarray, closed: bool) -> None:
        points = points.reshape(-1, 2).astype(np.float32)
        points = points + rng.normal(0.0, DOODLE_JITTER * side, points.shape).astype(np.float32)
        if closed and len(points) >= 3:
            start = int(rng.integers(0, len(points)))
            points = np.roll(points, -start, axis=0)
            points = np.concatenate([points, points[:1]])
            # the pen comes back short of its start, or past it
            end = points[-1] - points[-2]
            points[-1] = points[-2] + end * float(rng.uniform(0.85, 1.12))
        if rng.random() < 0.5:  # a curve, not a polygon: corners cut twice (Chaikin)
            for _ in range(2):
                a, b = points[:-1], points[1:]
                cut = np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], axis=1).reshape(-1, 2)
                points = np.concatenate([points[:1], cut, points[-1:]])
        pieces = [points]
        if len(points) >= 5 and rng.random() < 0.35:  # the outline drawn as two strokes
            cut = int(rng.integers(2, len(points) - 2))
            pieces = [points[: cut + 1], points[cut:] + rng.normal(0.0, 0.015 * side, 2).astype(np.float32)]
        for piece in pieces:
            cv2.polylines(lines, [piece.round().astype(np.int32).reshape(-1, 1, 2)], False, 1, 1)

    ordered = sorted(contours, key=lambda c: -cv2.contourArea(c))
    for c in ordered[: 1 + int(rng.integers(0, 2))]:
        if cv2.contourArea(c) >= 0.01 * side * side:
            stroke(cv2.approxPolyDP(_smooth_closed(c, float(rng.uniform(2.0, 4.0))), eps, closed=True), True)
    for c in inner[: int(rng.integers(0, 3))]:
        half = c.reshape(-1, 2)[: max(2, len(c) // 2)]  # a thin line's contour runs out and back: its first half
        stroke(cv2.approxPolyDP(half.reshape(-1, 1, 2), eps * 0.6, closed=False), False)
    return lines


def _sketch_one(photo: np.ndarray, fg: np.ndarray, skin: np.ndarray, rng: np.random.Generator,
                framed: bool = False, worn: bool = False, doodles: float = 0.0) -> np.ndarray:
    """One drawing of one photo, in one of three styles.

    The edge style keeps the photo's detail: a pixel-exact outline, many inner
    lines, pen lifts and a wobbly hand. The clean style draws what people draw
    on a canvas: a smooth outline simplified to a few long lines and curves, at
    most three inner lines, unbroken strokes of the canvas renderer's width.
    Without it, clean geometric strokes appear in training only on products
    that are themselves geometric (wallets, cufflinks), and a person's neat
    drawing of a bag or sunglasses is read as one of those. The doodle style
    (a share ``doodles`` of the drawings, taken from the clean style's ``CLEAN_P``) is a hasty icon of a few
    corners (``_doodle``).

    ``worn``: the item is photographed on a person (apparel, caps, socks); the clean and doodle styles leave the
    person out (``_without_wearer``), as nobody draws the model when drawing the shirt.
    """
    style = rng.random()
    doodle = style < doodles
    clean = not doodle and style < CLEAN_P
    # Silhouette at the catalog size, outlined at the drawing size from a smoothed upscale.
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_CLOSE, _ELLIPSE5)
    if worn and (clean or doodle):  # the styles of a person's drawing; the edge style keeps the photo's edges
        fg = _without_wearer(fg, skin)
    sil = _fill(cv2.morphologyEx(fg, cv2.MORPH_OPEN, _ELLIPSE3), min_area=20)
    soft = cv2.resize(cv2.GaussianBlur(sil.astype(np.float32), (5, 5), 0.9), (WORK_W, WORK_H),
                      interpolation=cv2.INTER_LINEAR)
    sil2 = (soft > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(sil2, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contours = list(contours) + _holes(fg, sil)
    if clean or doodle:
        eps = float(rng.uniform(*CLEAN_EPS))
        sigma = float(rng.uniform(1.5, 3.5))
        outline = [cv2.approxPolyDP(_smooth_closed(c, sigma), eps, closed=True) for c in contours]
    else:
        eps = float(rng.uniform(0.7, 1.6))
        outline = [cv2.approxPolyDP(c, eps, closed=True) for c in contours]
    lines = np.zeros((WORK_H, WORK_W), np.uint8)
    cv2.polylines(lines, outline, True, 1, 1)

    # Main inner lines: Canny inside the silhouette, off skin, long fragments only.
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(cv2.GaussianBlur(grey, (3, 3), 0.7), (WORK_W, WORK_H), interpolation=cv2.INTER_CUBIC)
    high = float(rng.uniform(*CANNY_HIGH))
    edges = cv2.Canny(grey, 0.4 * high, high, L2gradient=True)
    # Skin with its holes (eyes, mouth) closed, shrunk so that sleeve and neckline edges stay.
    skin = cv2.erode(cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_CLOSE, _ELLIPSE5), _ELLIPSE3)
    keep = cv2.erode(sil, _ELLIPSE3) & (1 - skin)
    keep = cv2.resize(keep.astype(np.uint8), (WORK_W, WORK_H), interpolation=cv2.INTER_NEAREST)
    edges = (edges > 0) & (keep > 0)
    # Texture (checks, prints, stripes close together) is dense edges: people draw its outline, not its pattern.
    density = cv2.boxFilter(edges.astype(np.float32), -1, (11, 11))
    edges &= density < TEXTURE_DENSITY
    n, labels, stats, _ = cv2.connectedComponentsWithStats(edges.astype(np.uint8), connectivity=8)
    keep_label = stats[:, cv2.CC_STAT_AREA] >= int(rng.integers(*MIN_LINE))
    keep_label[0] = False
    if doodle:  # the outline and the longest inner lines, each a few hasty strokes
        longest = [k for k in np.argsort(-stats[:, cv2.CC_STAT_AREA]) if keep_label[k]][:2]
        inner = [cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]
                 for k in longest]
        lines = _doodle(contours, inner, rng)
    elif clean:  # only the longest few inner lines
        keep_label[np.argsort(-np.where(keep_label, stats[:, cv2.CC_STAT_AREA], 0))[int(rng.integers(0, 4)):]] = False
    elif rng.random() < 0.5:  # leave out some inner lines altogether
        keep_label &= rng.random(n) >= 0.25
    if not doodle:
        lines[keep_label[labels]] = 1

    if doodle:
        width, gaps, wobble = USER_STROKE_WIDTH, 0, float(rng.uniform(0.3, 1.0))
    elif clean:
        width, gaps, wobble = USER_STROKE_WIDTH, 0, float(rng.uniform(0.0, 0.4))
    else:
        width = int(rng.choice(STROKE_WIDTHS, p=STROKE_WIDTH_P))
        gaps, wobble = int(rng.poisson(1.5)), float(rng.uniform(0.3, 1.0))
    points = np.concatenate([c.reshape(-1, 2) for c in contours]) if contours else np.zeros((0, 2), int)
    _erase_gaps(lines, points, rng, count=gaps)
    ink = lines.astype(np.float32)
    if width > 1:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    ink = _wobble(ink, rng, amount=wobble) if wobble > 0 else ink
    if framed:
        try:
            return frame_strokes(ink > 0.3)
        except SketchInputError:  # nothing found on this photo: the plain drawing (blank or specks)
            pass
    return _render_ink(ink)


def photo_to_sketch(images: np.ndarray, seed: int = 0, framed: bool = False,
                    worn: np.ndarray | None = None, doodles: float = 0.0) -> np.ndarray:
    """Line drawings of catalog photos: uint8 (N, 80, 60, 3) -> uint8 (N, 80, 60), strokes 0 on 255.

    ``framed``: each drawing is cropped to its strokes and redrawn as a user's drawing is
    (``frame_strokes``), the form queries have; otherwise it keeps the photo's
    framing, aligned with the photo (what pix2pix needs).

    Deterministic for a given (seed, position in ``images``); another seed gives
    another drawing of the same photo. OpenCV releases the GIL, so the images
    are drawn by a thread pool, one chunk per core.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (IMAGE_H, IMAGE_W, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, {IMAGE_H}, {IMAGE_W}, 3), got {images.dtype} "
                         f"{images.shape}")
    out = np.empty(images.shape[:3], dtype=np.uint8)

    def work(start: int, stop: int) -> None:
        for lo in range(start, stop, 256):
            hi = min(lo + 256, stop)
            chunk = images[lo:hi]
            fg, skin = _foreground(chunk), _skin(chunk)
            for j in range(hi - lo):
                out[lo + j] = _sketch_one(chunk[j], fg[j], skin[j], np.random.default_rng((seed, lo + j)), framed,
                                          bool(worn is not None and worn[lo + j]), doodles)

    n = len(images)
    workers = max(1, min(os.cpu_count() or 1, 16, n // 64 or 1))
    bounds = np.linspace(0, n, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, bounds[:-1], bounds[1:]))
    return out


# --------------------------------------------------------------------------- user drawings -> sketches


def _ink_map(img: Image.Image) -> np.ndarray:
    """Float ink in [0, 1] (1 = stroke) at the drawing's own size."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        if (alpha < 0.5).mean() > 0.2:  # a transparent background: the strokes are what is opaque
            return alpha
        grey = (rgba[..., :3] @ np.float32([0.299, 0.587, 0.114])) * alpha + (1.0 - alpha)
    else:
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    paper = float(np.median(grey))
    if paper < 0.5:  # light strokes on a dark background
        grey, paper = 1.0 - grey, 1.0 - paper
    level = _paper_level(grey)
    if level is None:  # even paper: a canvas, a scan
        return np.clip((paper - grey) / max(paper, 1e-3), 0.0, 1.0)
    grey = cv2.GaussianBlur(grey, (3, 3), 0)  # a camera's grain, which the shadows' low light amplifies
    return np.clip((level - grey) / np.maximum(level, 1e-3), 0.0, 1.0)


def _paper_level(grey: np.ndarray) -> np.ndarray | None:
    """The paper's brightness around each pixel of a photographed drawing (a shadow across the page, a
    vignette), or None when the paper is even to within ``PAPER_UNEVEN``.

    Read on a thumbnail ``PAPER_CELLS`` pixels across: the brightest pixel near each is roughly the paper,
    since strokes are thin and dark; the level is the mean of the pixels that rough level calls paper,
    smoothed and scaled back up.
    """
    h, w = grey.shape
    scale = PAPER_CELLS / max(h, w)
    if scale >= 0.5:  # too small a picture to tell shadow from strokes
        return None
    sample = grey[::4, ::4]
    if np.mean(np.abs(sample - np.median(sample)) <= 1.5 / 255) >= 0.5:  # paper of one exact shade: drawn on screen
        return None
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def thumbnail(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, size, interpolation=cv2.INTER_AREA)

    rough = cv2.GaussianBlur(cv2.dilate(thumbnail(grey), _ELLIPSE5), (5, 5), 0)
    low, high = np.percentile(rough, (2, 98))
    if high - low < PAPER_UNEVEN:
        return None
    # The brightest nearby overstates the paper where the light changes; the mean of what that rough level calls
    # paper does not.
    paper = (grey >= (1.0 - FAINT_INK) * cv2.resize(rough, (w, h), interpolation=cv2.INTER_LINEAR))
    paper = paper.astype(np.float32)
    share = thumbnail(paper)
    level = np.where(share > 0.05, thumbnail(grey * paper) / np.maximum(share, 1e-6), rough)
    return cv2.resize(cv2.GaussianBlur(level, (3, 3), 0), (w, h), interpolation=cv2.INTER_LINEAR)


def _ink_threshold(ink: np.ndarray) -> float:
    """Where ink starts: ``INK`` for a pen's strokes; for a pencil's faint ones (their cores lighter than
    ``FAINT_CORES``), half the cores' darkness, never below ``FAINT_INK``, which paper's grain and a camera's
    noise stay under."""
    sample = ink[::2, ::2]
    strokes = sample[sample > FAINT_INK]
    cores = float(np.percentile(strokes, 90)) if len(strokes) else 1.0
    return INK if cores >= FAINT_CORES else max(FAINT_INK, 0.5 * cores)


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """Zhang-Suen's two sub-iterations as lookup tables over a pixel's 8-neighbour code (bit k = neighbour
    P(k+2): N, NE, E, SE, S, SW, W, NW): True where a set pixel with that neighbourhood is removed."""
    codes = np.arange(256)
    p = [(codes >> k) & 1 for k in range(8)]  # p[0] = P2 (north) ... p[7] = P9 (north-west)
    neighbours = sum(p)
    transitions = sum((p[k] == 0) & (p[(k + 1) % 8] == 1) for k in range(8))
    base = (neighbours >= 2) & (neighbours <= 6) & (transitions == 1)
    p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
    first = base & (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
    second = base & (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
    return first, second


_THIN_TABLES = _thinning_tables()
# filter2D correlates: the weight at (dy + 1, dx + 1) is the code bit of the neighbour at (dy, dx).
_THIN_KERNEL = np.float32([[128, 1, 2], [64, 0, 4], [32, 16, 8]])


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to one-pixel centre lines (each sub-iteration one correlation and
    one table lookup)."""
    img = mask.astype(np.uint8)
    while True:
        changed = False
        for table in _THIN_TABLES:
            code = cv2.filter2D(img, cv2.CV_16S, _THIN_KERNEL, borderType=cv2.BORDER_CONSTANT)
            remove = table[code] & (img == 1)
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img.astype(bool)


def normalise_sketch(img: Image.Image) -> np.ndarray:
    """A user's drawing (any size, mode, stroke width, position) -> uint8 (80, 60) like ``photo_to_sketch``.

    Raises ``SketchInputError`` when there is nothing drawn (or only specks).
    """
    ink = _ink_map(img)
    # Work on at most ~1000 px: shrink huge canvases keeping every stroke (area > 0 = any ink).
    mask = ink > _ink_threshold(ink)
    factor = max(mask.shape) / 1000.0
    if factor > 1.0:
        size = (max(1, round(mask.shape[1] / factor)), max(1, round(mask.shape[0] / factor)))
        mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.05
    return frame_strokes(mask)


def frame_strokes(mask: np.ndarray) -> np.ndarray:
    """Strokes (bool mask, any size) -> uint8 (80, 60): specks removed, cropped to the strokes with the margin,
    padded to 60:80, thinned and redrawn with the user renderer's width. Queries and framed training sketches
    both end here, so a model sees a drawing's shape, never its size or place on the paper.
    """
    total = int(mask.sum())
    if total:
        mask = _remove_small(mask, min_area=max(4, int(0.005 * total)))
    ys, xs = np.nonzero(mask)
    if len(ys) < 10:
        raise SketchInputError("the sketch is empty: draw something first")
    # Mean stroke width: a stroke of width w and length L has area wL and perimeter about 2L.
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    stroke = 2.0 * len(ys) / max(1.0, sum(cv2.arcLength(c, True) for c in contours))
    if max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 < max(8.0, 2.5 * stroke):
        raise SketchInputError("the sketch is too small: draw the outline of a product, not a dot")
    # The box of the strokes' centre lines (what is redrawn), not of their ink: thick and thin frame alike.
    inset = min(stroke / 2.0, (ys.max() - ys.min()) / 2.0, (xs.max() - xs.min()) / 2.0)
    y0, y1 = ys.min() + inset, ys.max() + 1 - inset
    x0, x1 = xs.min() + inset, xs.max() + 1 - inset
    h, w = y1 - y0, x1 - x0

    # Frame: the strokes' box plus a margin, padded to 60:80 and centred.
    frame_h = max(h, w * IMAGE_H / IMAGE_W) / (1.0 - 2.0 * USER_MARGIN)
    frame_w = frame_h * IMAGE_W / IMAGE_H
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    sx, sy = WORK_W / frame_w, WORK_H / frame_h
    # Scale the mask into the drawing resolution; thicken first so no stroke falls below one pixel.
    grow = int(np.ceil(1.0 / sx)) if sx < 1.0 else 1
    src = mask.astype(np.uint8)
    if grow > 1:
        src = cv2.dilate(src, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    affine = np.float32([[sx, 0, WORK_W / 2.0 - sx * cx], [0, sy, WORK_H / 2.0 - sy * cy]])
    interp = cv2.INTER_AREA if sx < 1.0 else cv2.INTER_LINEAR
    work = cv2.warpAffine(src.astype(np.float32), affine, (WORK_W, WORK_H), flags=interp, borderValue=0) > 0.3
    return _render(_thin(work), USER_STROKE_WIDTH)


# --------------------------------------------------------------------------- looking at them


def save_sketch_sheet(photos: np.ndarray, sketches: np.ndarray, path: str | os.PathLike, n: int = 24,
                      scale: int = 3, columns: int = 6) -> Path:
    """A PNG of ``n`` (photo | sketch) pairs, ``columns`` pairs a row, each pixel drawn ``scale`` times."""
    n = min(n, len(photos), len(sketches))
    if n == 0:
        raise ValueError("no photos to draw")
    rows = -(-n // columns)
    gap = 4
    cell_w = 2 * IMAGE_W + gap
    sheet = np.full((rows * (IMAGE_H + gap) + gap, columns * (cell_w + gap) + gap, 3), 200, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = gap + r * (IMAGE_H + gap), gap + c * (cell_w + gap)
        sheet[y : y + IMAGE_H, x : x + IMAGE_W] = photos[i]
        sheet[y : y + IMAGE_H, x + IMAGE_W : x + 2 * IMAGE_W] = np.asarray(sketches[i])[..., None]
    img = Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
