"""The queries the HTTP sections send: catalog test-split photos, sketches drawn from them, their titles."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import setup_django


@dataclass
class QuerySet:
    photos: list[bytes]  # the catalog's own JPEG files
    sketches: list[bytes]  # PNG line drawings of the same photos (search.sketches.photo_to_sketch)
    titles: list[str]
    photo_arrays: np.ndarray  # uint8 (N, 80, 60, 3)
    sketch_arrays: np.ndarray  # uint8 (N, 80, 60)


def test_items(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """Up to ``n`` visible test-split items (sku, image path, title), a fixed random sample."""
    setup_django()
    from search.catalog import split_of
    from webapp.models import Item

    rows = [r for r in Item.objects.filter(hidden=False).values_list("sku", "image_path", "title")
            if split_of(r[0]) == "test" and Path(r[1]).is_file()]
    if not rows:
        raise RuntimeError("no test-split items with images in the database: import a catalog first")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    return [rows[i] for i in order[:n]]


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def build(n: int, seed: int = 0) -> QuerySet:
    from search.images import image_bytes_to_array
    from search.sketches import photo_to_sketch

    items = test_items(n, seed)
    if len(items) < n:  # a small catalog: cycle through what there is
        items = [items[i % len(items)] for i in range(n)]
    photos = [Path(p).read_bytes() for _, p, _ in items]
    arrays = np.stack([image_bytes_to_array(b) for b in photos])
    sketches = photo_to_sketch(arrays, seed=seed)
    return QuerySet(photos=photos, sketches=[png(s) for s in sketches], titles=[t for _, _, t in items],
                    photo_arrays=arrays, sketch_arrays=sketches)
