"""Import a catalog directory into the database: idempotent, transactional, reported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from search.catalog import CatalogRow, read_catalog
from search.images import ImageInputError, decode_image
from webapp.models import Item

FIELDS = ["title", "category", "master_category", "sub_category", "gender", "colour", "season", "usage", "year",
          "image_path"]


@dataclass
class ImportSummary:
    layout: str = ""
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)


def _check_image(row: CatalogRow, verify: bool) -> str | None:
    path = row.image_path
    if not path.is_file():
        return f"id {row.id}: no image file ({path.name})"
    if verify:
        try:
            decode_image(path.read_bytes())
        except (OSError, ImageInputError) as exc:
            return f"id {row.id}: unreadable image {path.name} ({exc})"
    return None


def import_catalog(path: str | Path, *, verify_images: bool = True, batch_size: int = 2000,
                   progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Create or update one Item per good row; rows with problems are reported and skipped.

    Raises ``search.catalog.CatalogError`` for a bad path or wrong CSV before any
    write. Everything is written in one transaction: an interrupted import
    leaves the database as it was.
    """
    read = read_catalog(path)
    summary = ImportSummary(layout=read.layout, rows=len(read.rows) + len(read.problems), problems=list(read.problems))
    good: list[CatalogRow] = []
    for i, row in enumerate(read.rows):
        problem = _check_image(row, verify_images)
        if problem:
            summary.problems.append((0, problem))
        else:
            good.append(row)
        if progress and (i % 1000 == 0 or i == len(read.rows) - 1):
            progress(i + 1, len(read.rows))
    with transaction.atomic():
        existing = {item.sku: item for item in Item.objects.filter(sku__in=[r.id for r in good]).iterator(chunk_size=5000)}
        to_create, to_update = [], []
        for row in good:
            values = {"title": row.title, "category": row.category, "master_category": row.master_category,
                      "sub_category": row.sub_category, "gender": row.gender, "colour": row.colour,
                      "season": row.season, "usage": row.usage, "year": row.year,
                      "image_path": str(row.image_path.resolve())}
            item = existing.get(row.id)
            if item is None:
                to_create.append(Item(sku=row.id, **values))
            elif any(getattr(item, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(item, k, v)
                to_update.append(item)
            else:
                summary.unchanged += 1
        Item.objects.bulk_create(to_create, batch_size=batch_size)
        Item.objects.bulk_update(to_update, FIELDS, batch_size=batch_size)
    summary.created, summary.updated = len(to_create), len(to_update)
    summary.problems.sort()
    return summary
