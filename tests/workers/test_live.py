"""Live additions and deletions: visible in search at once, folded in by the next reindex."""

import numpy as np
import pytest

from tests.conftest import COLOURS, draw_item
from webapp.models import IndexEntry, Item, LiveVector

pytestmark = pytest.mark.django_db


def search_by_file(path, k=5, **filters):
    from webapp.services import Filters, search_vector
    from workers.tasks import encode_query

    return [h.item.pk for h in search_vector(encode_query(path.read_bytes(), "photo"), k, Filters(**filters)).hits]


def test_live_add_hide_delete_and_fold(searchable, tmp_path):
    from webapp.indexing import add_live_item, reindex
    from webapp.services import similar_items

    path = tmp_path / "new.jpg"
    draw_item("Handbags", COLOURS["Red"], np.random.default_rng(123)).save(path, quality=95)
    item = Item.objects.create(sku="new-1", title="new bag", category="Handbags", colour="Red", gender="Women",
                               image_path=str(path), source=Item.Source.UPLOAD)
    assert item.pk not in search_by_file(path)
    add_live_item(item)
    assert search_by_file(path)[0] == item.pk  # its own picture finds it first, before any reindex
    assert search_by_file(path, category="Handbags")[0] == item.pk
    assert item.pk not in search_by_file(path, category="Watches")
    assert similar_items(item, 5).hits and item.pk not in [h.item.pk for h in similar_items(item, 5).hits]

    Item.objects.filter(pk=item.pk).update(hidden=True)
    assert item.pk not in search_by_file(path, k=20)
    Item.objects.filter(pk=item.pk).update(hidden=False)

    reindex()  # folds the live vector into the new version
    assert not LiveVector.objects.exists()
    assert IndexEntry.objects.filter(version__is_active=True, item=item).exists()
    assert search_by_file(path)[0] == item.pk

    indexed = Item.objects.filter(category="Watches").first()
    indexed.delete()
    assert indexed.pk not in search_by_file(tmp_path / "new.jpg", k=160)


def test_changed_item_supersedes_its_indexed_vector(searchable, tmp_path):
    from webapp.indexing import add_live_item

    item = Item.objects.filter(category="Watches").first()
    path = tmp_path / "now-a-shoe.jpg"
    draw_item("Casual Shoes", COLOURS["Green"], np.random.default_rng(5)).save(path, quality=95)
    item.image_path, item.category = str(path), "Casual Shoes"
    item.save()
    add_live_item(item)
    hits = search_by_file(path, k=10)
    assert hits[0] == item.pk and hits.count(item.pk) == 1  # once, with its new vector
