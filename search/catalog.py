"""Read a product catalog from disk.

Two layouts are understood:

* **Kaggle** "Fashion Product Images": ``styles.csv`` (``id,gender,masterCategory,
  subCategory,articleType,baseColour,season,year,usage,productDisplayName``) and
  ``images/<id>.jpg``. 22 rows of the real file carry unquoted commas in the
  title; every field from the 10th on is joined back into the title.
* **Generic** ``catalog.csv`` with columns ``id,image,title,category`` and any of
  ``gender,colour,master_category,sub_category,season,usage,year``; ``image`` is
  a path relative to the catalog directory.

Reading never changes anything: it returns the good rows plus a list of
problems (row number + reason) for the caller to report.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

KAGGLE_COLUMNS = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                  "season", "year", "usage", "productDisplayName"]
GENERIC_REQUIRED = ["id", "image", "title", "category"]
GENERIC_OPTIONAL = ["gender", "colour", "master_category", "sub_category", "season", "usage", "year"]
MAX_FIELD = 500  # characters; longer cells are refused, not truncated silently

SPLITS = ("train", "val", "test")


class CatalogError(ValueError):
    """The catalog as a whole cannot be read (bad path, wrong CSV)."""


@dataclass(frozen=True)
class CatalogRow:
    id: str
    image_path: Path
    title: str
    category: str  # articleType
    master_category: str = ""
    sub_category: str = ""
    gender: str = ""
    colour: str = ""
    season: str = ""
    usage: str = ""
    year: int | None = None


# Where the catalog shows an item on a person: clothes, and the accessories worn on the body (subCategory).
WORN_SUBCATEGORIES = {"Headwear", "Socks", "Scarves", "Mufflers", "Stoles", "Ties"}


def is_worn(row: CatalogRow) -> bool:
    """Whether the item's photo may show it worn by a model (apparel, caps, socks, scarves): its drawing leaves
    the person out (``search.sketches``)."""
    return row.master_category == "Apparel" or row.sub_category in WORN_SUBCATEGORIES


@dataclass
class CatalogRead:
    root: Path
    layout: str  # "kaggle" | "generic"
    rows: list[CatalogRow] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def split_of(item_id: str) -> str:
    """Deterministic split by id: crc32 % 10 -> 0-7 train, 8 val, 9 test."""
    bucket = zlib.crc32(str(item_id).encode("utf-8")) % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


def _decode_text(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Non-UTF-8 bytes in a few cells must not sink the whole import.
        return raw.decode("utf-8", errors="replace")


def _safe_image_path(root: Path, rel: str) -> Path | None:
    """``rel`` joined to ``root``; None when it is absolute or climbs out (``../../etc/passwd``).

    The check is lexical: symbolic links inside the catalog directory are the
    catalog owner's to place and are followed.
    """
    if not rel or rel.startswith(("/", "\\")) or "\x00" in rel or ":" in rel[:3]:
        return None
    candidate = os.path.normpath(os.path.join(str(root), rel.replace("\\", "/")))
    if os.path.commonpath([candidate, os.path.normpath(str(root))]) != os.path.normpath(str(root)):
        return None
    return Path(candidate)


def _year(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def read_catalog(path: str | Path) -> CatalogRead:
    """Read the catalog at ``path`` (a directory, or a CSV file inside one)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CatalogError(f"catalog path does not exist: {path}")
    if path.is_file():
        root, csv_path = path.parent, path
    else:
        root = path
        candidates = [path / "styles.csv", path / "catalog.csv"]
        csv_path = next((c for c in candidates if c.is_file()), None)
        if csv_path is None:
            raise CatalogError(f"no styles.csv or catalog.csv in {path}")
    text = _decode_text(csv_path.read_bytes(), csv_path)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CatalogError(f"{csv_path} is empty")
    header = [h.strip() for h in next(csv.reader([lines[0]]))]
    if header[: len(KAGGLE_COLUMNS)] == KAGGLE_COLUMNS:
        return _read_kaggle(root, lines)
    if all(col in header for col in GENERIC_REQUIRED):
        return _read_generic(root, text, header)
    raise CatalogError(
        f"{csv_path.name} has columns {header!r}; expected the Kaggle styles.csv columns "
        f"({','.join(KAGGLE_COLUMNS)}) or a catalog.csv with at least {','.join(GENERIC_REQUIRED)}"
    )


def _read_kaggle(root: Path, lines: list[str]) -> CatalogRead:
    result = CatalogRead(root=root, layout="kaggle")
    seen: set[str] = set()
    n = len(KAGGLE_COLUMNS)
    for lineno, fields in enumerate(csv.reader(lines[1:]), start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) < n:
            result.problems.append((lineno, f"expected {n} fields, found {len(fields)}"))
            continue
        if len(fields) > n:  # unquoted commas in productDisplayName
            fields = fields[: n - 1] + [",".join(fields[n - 1 :])]
        rec = dict(zip(KAGGLE_COLUMNS, (f.strip() for f in fields)))
        problem = _check_common(rec["id"], rec["productDisplayName"], rec["articleType"], seen)
        if problem:
            result.problems.append((lineno, problem))
            continue
        seen.add(rec["id"])
        result.rows.append(CatalogRow(
            id=rec["id"], image_path=root / "images" / f"{rec['id']}.jpg", title=rec["productDisplayName"],
            category=rec["articleType"], master_category=rec["masterCategory"], sub_category=rec["subCategory"],
            gender=rec["gender"], colour=rec["baseColour"], season=rec["season"], usage=rec["usage"],
            year=_year(rec["year"]),
        ))
    return result


def _read_generic(root: Path, text: str, header: list[str]) -> CatalogRead:
    result = CatalogRead(root=root, layout="generic")
    seen: set[str] = set()
    reader = csv.reader(io.StringIO(text))
    next(reader, None)  # header
    for lineno, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            result.problems.append((lineno, f"more fields than the {len(header)} columns"))
            continue
        rec = {k: (v or "").strip() for k, v in zip(header, cells)}
        rec.update({k: "" for k in header[len(cells):]})
        problem = _check_common(rec["id"], rec["title"], rec["category"], seen)
        if problem:
            result.problems.append((lineno, problem))
            continue
        image_path = _safe_image_path(root, rec["image"])
        if image_path is None:
            result.problems.append((lineno, f"image path {rec['image']!r} is empty or outside the catalog directory"))
            continue
        seen.add(rec["id"])
        result.rows.append(CatalogRow(
            id=rec["id"], image_path=image_path, title=rec["title"], category=rec["category"],
            master_category=rec.get("master_category", ""), sub_category=rec.get("sub_category", ""),
            gender=rec.get("gender", ""), colour=rec.get("colour", ""), season=rec.get("season", ""),
            usage=rec.get("usage", ""), year=_year(rec.get("year", "")),
        ))
    return result


def _check_common(item_id: str, title: str, category: str, seen: set[str]) -> str | None:
    if not item_id:
        return "empty id"
    if len(item_id) > 64 or any(c in item_id for c in "/\\\x00") or item_id in {".", ".."}:
        return f"invalid id {item_id[:40]!r}"
    if item_id in seen:
        return f"duplicate id {item_id}"
    if not category:
        return f"id {item_id}: empty category"
    if len(title) > MAX_FIELD or len(category) > MAX_FIELD:
        return f"id {item_id}: a field is longer than {MAX_FIELD} characters"
    return None
