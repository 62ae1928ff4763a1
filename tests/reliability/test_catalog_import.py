"""Catalog import with hostile rows: each problem reported and skipped, re-runnable, all or nothing."""

from __future__ import annotations

import pytest

from tests.conftest import draw_item
from tests.reliability.corpus import corpus
from webapp.catalog_import import import_catalog
from webapp.models import Item

pytestmark = pytest.mark.django_db


def messy_catalog(root, outside_image):
    """A generic catalog with two good rows and one row per kind of trouble."""
    import numpy as np

    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("good1", "good2", "dup"):
        draw_item("Watches", (200, 30, 40), rng).save(images / f"{name}.jpg")
    hostile = {s.name: s.data for s in corpus()}
    (images / "html.jpg").write_bytes(hostile["html-named-jpg"])
    (images / "bomb.png").write_bytes(hostile["png-bomb-50000x50000"])
    (images / "empty.jpg").write_bytes(b"")
    rows = [
        b"id,image,title,category,gender,colour",
        b"g1,images/good1.jpg,Good watch,Watches,Men,Red",
        b"g2,images/good2.jpg,Caf\xe9 cr\xe8me watch \xff,Watches,Women,Red",  # Latin-1 bytes in a UTF-8 file
        b"g1,images/dup.jpg,Duplicate id,Watches,Men,Red",
        b"t1,../../etc/passwd,Traversal,Watches,,",
        b"t2,/etc/passwd,Absolute,Watches,,",
        b"t3,images/../../" + outside_image.name.encode() + b",Climbs out to a real image,Watches,,",
        b"t4,..\\..\\windows\\win.ini,Backslashes,Watches,,",
        b"m1,images/missing.jpg,Missing file,Watches,,",
        b"h1,images/html.jpg,HTML named jpg,Watches,,",
        b"b1,images/bomb.png,Decompression bomb,Watches,,",
        b"e1,images/empty.jpg,Zero bytes,Watches,,",
        b"x1,images/good1.jpg,No category,,,",
        b",images/good1.jpg,No id,Watches,,",
        b"../x,images/good1.jpg,Slash in id,Watches,,",
        b"l1,images/good1.jpg," + b"L" * 600 + b",Watches,,",
        b"f1,images/good1.jpg,Too many,Watches,Men,Red,extra,fields",
        b"",
    ]
    (root / "catalog.csv").write_bytes(b"\n".join(rows))
    return root


def test_bad_rows_are_reported_skipped_and_the_import_reruns(tmp_path):
    outside = tmp_path / "secret.jpg"
    draw_item("Watches", (0, 0, 0), __import__("numpy").random.default_rng(1)).save(outside)
    root = messy_catalog(tmp_path / "a" / "b", outside)

    first = import_catalog(root)
    assert first.created == 2 and set(Item.objects.values_list("sku", flat=True)) == {"g1", "g2"}
    reasons = " | ".join(reason for _, reason in first.problems)
    assert first.skipped == 14, reasons
    assert reasons.count("outside the catalog directory") == 4
    for expected in ("duplicate id g1", "no image file (missing.jpg)", "unreadable image html.jpg",
                     "unreadable image bomb.png", "unreadable image empty.jpg", "empty category", "empty id",
                     "invalid id", "longer than 500", "more fields"):
        assert expected in reasons, expected
    assert Item.objects.get(sku="g2").title.startswith("Caf")
    assert not Item.objects.filter(image_path__contains="..").exists()
    assert all(str(root.resolve()) in p for p in Item.objects.values_list("image_path", flat=True))

    again = import_catalog(root)
    assert (again.created, again.updated, again.unchanged, again.skipped) == (0, 0, 2, 14)
    assert Item.objects.count() == 2


def test_an_exception_mid_import_leaves_the_database_unchanged(synthetic_catalog, monkeypatch):
    import_catalog(synthetic_catalog)
    before = sorted(Item.objects.values_list("sku", "title", "category"))
    Item.objects.filter(sku="1001").update(title="edited since")  # the next import would update it...
    Item.objects.filter(sku="1002").delete()  # ...and create this one again
    before = sorted(Item.objects.values_list("sku", "title", "category"))

    def crash(*args, **kwargs):  # bulk_create has already run inside the transaction when this fires
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(Item.objects), "bulk_update", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        import_catalog(synthetic_catalog)
    assert sorted(Item.objects.values_list("sku", "title", "category")) == before

    monkeypatch.undo()
    summary = import_catalog(synthetic_catalog)  # and the same import then completes
    assert (summary.created, summary.updated) == (1, 1) and Item.objects.count() == 160
