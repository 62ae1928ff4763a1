"""Drawings made by people: the training pool and the validation set of sketch search.

Two folders of the shared data hold them (their README.md files give the sources):

- ``human-sketches-train/``: doodles of a few kinds, to train on. ``read_pool`` frames every drawing exactly as
  a query is framed (``normalise_sketch``) and labels it with the catalog articleType its kind is sold as
  (``KIND_CATEGORY``), so the encoder learns the shopper's icon beside the edge maps of catalog photos.
- ``human-sketches/``: the validation set (``queries.csv``, ``evaluate``'s default human figures). It is read only
  to choose between variants, never to train: ``read_pool`` refuses a folder that holds a ``queries.csv``.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.images import ImageInputError, decode_image
from search.sketches import normalise_sketch

# What a drawn kind is sold as in this catalog (an articleType of styles.csv). A kind the catalog sells under
# several articleTypes maps to the most common of them: a drawn hat is most often a cap.
KIND_CATEGORY = {
    "hat": "Caps",
    "t-shirt": "Tshirts",
    "sock": "Socks",
    "pants": "Trousers",
    "shorts": "Shorts",
    "sweater": "Sweaters",
    "shoe": "Casual Shoes",
    "flip flops": "Flip Flops",
    "backpack": "Backpacks",
    "purse": "Handbags",
    "belt": "Belts",
    "wristwatch": "Watches",
    "eyeglasses": "Sunglasses",
    "necklace": "Necklace and Chains",
    "lipstick": "Lipstick",
    "underwear": "Briefs",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


@dataclass
class Pool:
    """People's drawings framed as queries are: ``sketches`` uint8 (N, 80, 60), with their drawn ``kinds``."""

    sketches: np.ndarray
    kinds: list[str]
    skipped: list[str]

    def labels(self, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(sketches, articleType indices) of the drawings whose kind the catalog sells under a known class."""
        index = {name: i for i, name in enumerate(class_names)}
        keep = [i for i, kind in enumerate(self.kinds) if index.get(KIND_CATEGORY.get(kind, "")) is not None]
        labels = np.array([index[KIND_CATEGORY[self.kinds[i]]] for i in keep], dtype=np.int64)
        return self.sketches[keep], labels


def pool_files(directory: Path) -> list[tuple[Path, str]]:
    """(file, kind) of every drawing under ``directory``: from ``manifest.csv`` (path, kind) when there is one,
    else every image in ``<source>/<kind>/``."""
    manifest = directory / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(directory / r["path"].strip(), r["kind"].strip()) for r in csv.DictReader(fh)
                    if r.get("path") and r.get("kind")]
    else:
        rows = [(p, p.parent.name) for p in sorted(directory.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    return rows


def read_pool(directory: str | Path, cache_dir: str | Path | None = None) -> Pool:
    """Every drawing of a training pool, framed as a query; unreadable or empty ones are skipped and named."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no folder of drawings at {directory}")
    if (directory / "queries.csv").is_file():
        raise ValueError(f"{directory} holds queries.csv: it is a validation set, never trained on")
    files = pool_files(directory)
    key = hashlib.sha256("\n".join(f"{p.relative_to(directory)}:{k}:{p.stat().st_size if p.is_file() else -1}"
                                   for p, k in files).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"drawings-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        data = np.load(cache, allow_pickle=False)
        return Pool(data["sketches"], [str(k) for k in data["kinds"]], [str(s) for s in data["skipped"]])
    sketches, kinds, skipped = [], [], []
    for path, kind in files:
        try:
            sketches.append(normalise_sketch(decode_image(path.read_bytes(), keep_alpha=True)))
            kinds.append(kind)
        except (OSError, ImageInputError) as exc:
            skipped.append(f"{path.name}: {exc}")
    pool = Pool(np.stack(sketches) if sketches else np.zeros((0, 80, 60), np.uint8), kinds, skipped)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, sketches=pool.sketches, kinds=np.array(kinds, dtype=str), skipped=np.array(skipped, dtype=str))
        tmp.replace(cache)
    return pool


# ---- Quick, Draw! strokes, as the canvas draws them ------------------------------------------------------------
# The shop's canvas is CANVAS px square with a CANVAS_STROKE px brush by default (static/js/sketch.js); the human
# set's PNGs were rendered so too, each drawing scaled to DRAWING_SPAN px and centred (human-sketches/README.md).
CANVAS = 512
CANVAS_STROKE = 7
DRAWING_SPAN = 420


def read_ndjson(path: str | Path) -> list[dict]:
    """The drawings of a Quick, Draw! ``.ndjson`` file (one JSON object a line, ``drawing`` = strokes, each
    ``[[x...], [y...]]``); lines that are not such a drawing are skipped."""
    import json

    drawings = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            strokes = record["drawing"]
            if strokes and all(len(s) >= 2 and len(s[0]) == len(s[1]) and len(s[0]) for s in strokes):
                drawings.append(record)
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return drawings


def canvas_strokes(strokes: list, size: int = CANVAS, span: int = DRAWING_SPAN) -> list[list[tuple[float, float]]]:
    """Quick, Draw! strokes -> points on a ``size`` px canvas: the drawing scaled so that its longer side is
    ``span`` px, and centred."""
    xs = np.concatenate([np.asarray(s[0], float) for s in strokes])
    ys = np.concatenate([np.asarray(s[1], float) for s in strokes])
    scale = span / max(xs.max() - xs.min(), ys.max() - ys.min(), 1.0)
    dx = (size - (xs.max() - xs.min()) * scale) / 2 - xs.min() * scale
    dy = (size - (ys.max() - ys.min()) * scale) / 2 - ys.min() * scale
    return [[(x * scale + dx, y * scale + dy) for x, y in zip(s[0], s[1], strict=True)] for s in strokes]


def render_strokes(strokes: list, size: int = CANVAS, width: int = CANVAS_STROKE):
    """A Quick, Draw! drawing as the canvas shows it: a ``size`` px square PIL image, black ``width`` px round
    strokes on white."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    for points in canvas_strokes(strokes, size):
        if len(points) == 1:
            points = points * 2
        draw.line(points, fill=0, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps, as the canvas's lineCap
            r = width / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return img
