"""The catalog as the models see it: rows, split, label indices and image arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.catalog import CatalogRow, read_catalog, split_of
from search.images import load_image_array


@dataclass
class SplitData:
    rows: list[CatalogRow]
    images: np.ndarray  # uint8 (N, 80, 60, 3)
    labels: np.ndarray  # int64 articleType index into Dataset.class_names (-1: not a known class)

    @property
    def titles(self) -> list[str]:
        return [r.title for r in self.rows]


@dataclass
class Dataset:
    class_names: list[str]
    train: SplitData
    val: SplitData
    test: SplitData

    def split(self, name: str) -> SplitData:
        return getattr(self, name)


def load_dataset(catalog_dir: str | Path, cache_dir: str | Path | None = None, *, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Read the catalog, decode (or memory-map) its images and cut the deterministic split.

    Rows whose image is missing or unreadable are left out. Class names are the
    articleTypes of the training split, sorted; ``limit`` keeps the first N rows
    by id order (for tests and quick experiments).
    """
    read = read_catalog(catalog_dir)
    rows = sorted((r for r in read.rows if r.image_path.is_file()), key=lambda r: (len(r.id), r.id))
    if limit is not None:
        rows = rows[:limit]
    images, ok = load_image_array([r.image_path for r in rows], Path(cache_dir) if cache_dir else None, progress)
    keep = np.flatnonzero(ok)
    rows = [rows[i] for i in keep]
    splits = np.array([split_of(r.id) for r in rows])
    class_names = sorted({r.category for r, s in zip(rows, splits) if s == "train"})
    index = {c: i for i, c in enumerate(class_names)}

    def part(name: str) -> SplitData:
        sel = np.flatnonzero(splits == name)
        return SplitData(rows=[rows[i] for i in sel], images=np.asarray(images[keep[sel]]),
                         labels=np.array([index.get(rows[i].category, -1) for i in sel], dtype=np.int64))

    return Dataset(class_names=class_names, train=part("train"), val=part("val"), test=part("test"))
