"""Evaluate an external query CSV: ``query_image,kind,text,expected_category,category_level,expected_item_id``.

Each row is run through the same query path as the API; P@5 is reported per
kind and category level (a hit = the item's category at that level equals the
expected one). Rows that cannot run are counted under ``errors`` with a reason.

A CSV with ``drawn_as`` (and ``source``) columns, as the set of people's drawings has, is also reported per
drawn kind (``groups``: "hat (quickdraw)"), with what those queries found instead, and the macro average over
the kinds, which weighs a rare kind as much as a common one.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

from webapp.queries import Query, QueryError, run
from webapp.services import Filters

EXAMPLES = 4  # drawings of each kind kept with what they found, for the report page's sheet
MAX_ROWS = 200  # rows reported one by one (what each query found), for looking at small sets
LEVELS = {"masterCategory": "master_category", "subCategory": "sub_category", "articleType": "category",
          "": "category"}

class _File:
    """The shape of an uploaded file that ``webapp.queries`` reads."""

    def __init__(self, data: bytes):
        self._data = data
        self.size = len(data)

    def read(self, n: int = -1) -> bytes:
        return self._data if n < 0 else self._data[:n]

def evaluate_query_file(path: Path, k: int = 5) -> dict:
    """P@k per kind and category level; where a row names ``expected_item_id`` (the catalog id), also whether
    that item is among the top 10 (``expected_item.r_at_10`` per kind)."""
    if not path.is_file():
        raise FileNotFoundError(f"query file not found: {path}")
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    groups: dict[str, list[float]] = defaultdict(list)
    instead: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list[dict]] = defaultdict(list)
    found: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    rows: list[dict] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            kind = (row.get("kind") or "photo").strip()
            level = (row.get("category_level") or "articleType").strip()
            expected = (row.get("expected_category") or "").strip()
            expected_item = (row.get("expected_item_id") or "").strip()
            field = LEVELS.get(level)
            if field is None or not (expected or expected_item):
                errors.append(f"line {lineno}: needs expected_category (with a known category_level) "
                              "or expected_item_id")
                continue
            try:
                upload = None
                if row.get("query_image"):
                    image_path = (path.parent / row["query_image"]).resolve()
                    upload = _File(image_path.read_bytes())
                query = Query(k=max(k, 10), filters=Filters())
                if kind == "photo":
                    query.photo = upload
                elif kind == "sketch":
                    query.sketch = upload
                elif kind == "text":
                    query.text = row.get("text") or ""
                else:
                    raise QueryError(f"unknown kind {kind!r}")
                result = run(query).result
            except (OSError, QueryError, AttributeError, RuntimeError) as exc:
                errors.append(f"line {lineno}: {exc}")
                continue
            if expected:
                values = [getattr(h.item, field) for h in result.hits[:k]]
                sums[(kind, level)].append(sum(v == expected for v in values) / k)
                if row.get("drawn_as"):
                    group = row["drawn_as"].strip() + (f" ({row['source'].strip()})" if row.get("source") else "")
                    groups[group].append(sums[(kind, level)][-1])
                    instead[group].update(h.item.category for h, v in zip(result.hits[:k], values) if v != expected)
                    if len(examples[group]) < EXAMPLES:
                        examples[group].append({"query": str(path.parent / row["query_image"]),
                                                "found": [h.item.image_path for h in result.hits[:k]],
                                                "hits": [v == expected for v in values]})
                if len(rows) < MAX_ROWS:
                    rows.append({"line": lineno, "query": row.get("query_image") or row.get("text") or "",
                                 "expected": expected, "p_at_5": sums[(kind, level)][-1], "found": values})
            if expected_item:
                found[kind].append(float(expected_item in [h.item.sku for h in result.hits[:10]]))
    out: dict = defaultdict(dict)
    for (kind, level), scores in sums.items():
        out[kind][level] = {"p_at_5": sum(scores) / len(scores), "n": len(scores)}
    for kind, hits in found.items():
        out[kind]["expected_item"] = {"r_at_10": sum(hits) / len(hits), "n": len(hits)}
    out = dict(out)
    if groups:
        out["groups"] = {g: {"p_at_5": sum(v) / len(v), "n": len(v),
                             "found_instead": [c for c, _ in instead[g].most_common(3)],
                             "examples": examples[g]}
                         for g, v in sorted(groups.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))}
        scores = [g["p_at_5"] for g in out["groups"].values()]
        out["macro_p_at_5"] = sum(scores) / len(scores)
        out["min_p_at_5"] = min(scores)
        out["n_groups"] = len(scores)
    out["rows"] = rows
    if errors:
        out["errors"] = errors[:50]
        out["n_errors"] = len(errors)
    return out
